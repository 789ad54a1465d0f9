#!/usr/bin/env bash
# Installs or starts what the tests need, idempotently: the OpenSSH client
# (sftp, ssh-keygen) for the SFTP listener and end-to-end tests, OpenSSH
# sshd and vsftpd as partner servers for the transports, openssl for the
# FTPS test CA, chromium for the console's browser test, and versitygw (a real S3-API
# server) for the archive and s3:// polls. As root it uses apt-get;
# otherwise it only reports what is missing (the tests then fail in CI and
# skip elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v go >/dev/null || { echo "test-deps: Go is required" >&2; exit 1; }

need_apt=()
command -v sftp >/dev/null && command -v ssh-keygen >/dev/null || need_apt+=(openssh-client)
[[ -x /usr/sbin/sshd ]] || need_apt+=(openssh-server)
[[ -x /usr/sbin/vsftpd ]] || need_apt+=(vsftpd)
command -v openssl >/dev/null || need_apt+=(openssl)
[[ -x /usr/bin/chromium ]] || need_apt+=(chromium)
if ((${#need_apt[@]})); then
	if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq || true
		apt-get install -y -qq "${need_apt[@]}" >/dev/null
	else
		echo "test-deps: missing ${need_apt[*]} (apt-get install -y ${need_apt[*]})" >&2
	fi
fi
# versitygw: `go install` once (about 80 s on a cold cache), reused after.
bash scripts/s3server.sh install >/dev/null

# PostgreSQL (the spool's cluster backend): these machines run PostgreSQL 15 on
# 127.0.0.1:5432; start it if it is down.
if ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
	if command -v pg_ctlcluster >/dev/null && [[ -d /etc/postgresql ]]; then
		pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
	fi
	(exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null || echo "test-deps: PostgreSQL is not running on 127.0.0.1:5432 (the spool's PostgreSQL tests need it)" >&2
fi
