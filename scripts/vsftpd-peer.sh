#!/usr/bin/env bash
# vsftpd-peer.sh — a real FTP server (vsftpd) on loopback, for tests. Idempotent.
#
#   scripts/vsftpd-peer.sh start DIR PORT [tls|implicit]
#                                                 serve on 127.0.0.1:PORT; "tls": explicit TLS (AUTH TLS, ftpes),
#                                                 "implicit": implicit TLS (TLS from the first byte, ftps)
#   scripts/vsftpd-peer.sh stop DIR               stop the server started on DIR (by its pid)
#   scripts/vsftpd-peer.sh status DIR             exit 0 if it is running
#
# Login: anonymous (user "anonymous", any or no password). vsftpd refuses a
# writable chroot root, so the anonymous root DIR/root is root-owned 0755 and
# clients work in DIR/root/incoming (remote path "/incoming"), owned by the
# "ftp" user, where anonymous users may upload, mkdir, rename and delete.
# Passive ports: PORT+1 .. PORT+10 on 127.0.0.1.
# With tls or implicit: DIR/ca.pem (a fresh self-signed CA; give it to clients as their
# CA file) signs DIR/server.pem (CN and IP SAN 127.0.0.1, DNS SAN localhost).
# Files: DIR/vsftpd.conf (root-owned: vsftpd insists), DIR/vsftpd.pid,
# DIR/vsftpd.log. Needs root (vsftpd does); installs vsftpd with apt-get if
# it is missing. Env: VSFTPD_WAIT seconds (default 15).
set -euo pipefail

WAIT="${VSFTPD_WAIT:-15}"
BIN=/usr/sbin/vsftpd

die() { echo "vsftpd-peer: $*" >&2; exit 1; }
PIDFILE_NAME=vsftpd.pid
# shellcheck source=peer-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/peer-lib.sh"

install() {
	[[ -x "$BIN" ]] && return
	[[ $(id -u) -eq 0 ]] || die "vsftpd is not installed and installing it needs root"
	command -v apt-get >/dev/null || die "vsftpd is not installed and apt-get is missing"
	echo "vsftpd-peer: installing vsftpd ..." >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq vsftpd >&2 ||
		{ DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq vsftpd >&2; } ||
		die "apt-get install vsftpd failed"
	[[ -x "$BIN" ]] || die "vsftpd not found at $BIN after install"
}



gencerts() {
	local dir=$1
	[[ -s "$dir/ca.pem" && -s "$dir/server.pem" && -s "$dir/server.key" ]] && return
	command -v openssl >/dev/null || die "openssl is required for tls"
	openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=edigw test CA" \
		-keyout "$dir/ca.key" -out "$dir/ca.pem" \
		-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
	openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
		-keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
	printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' >"$dir/server.ext"
	openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
		-days 30 -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null
	chmod 600 "$dir/server.key" "$dir/ca.key"
}

start() {
	[[ $# -eq 2 || $# -eq 3 ]] || die "usage: $0 start DIR PORT [tls|implicit]"
	local dir=$1 port=$2 tls=${3:-}
	[[ "$port" =~ ^[0-9]+$ ]] || die "bad port: $port"
	[[ -z "$tls" || "$tls" == tls || "$tls" == implicit ]] || die "third argument must be 'tls' or 'implicit'"
	[[ $(id -u) -eq 0 ]] || die "vsftpd must run as root"
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	if alive "$dir"; then
		answers "$port" || die "vsftpd pid $(cat "$dir/vsftpd.pid") runs on $dir but 127.0.0.1:$port does not answer"
		echo "vsftpd-peer: already running on 127.0.0.1:$port (pid $(cat "$dir/vsftpd.pid"))" >&2
		return
	fi
	answers "$port" && die "127.0.0.1:$port is already in use by another process"
	install
	id ftp >/dev/null 2>&1 || die "the 'ftp' user is missing (the vsftpd package creates it)"
	mkdir -p -m 0755 /var/run/vsftpd/empty

	# The chroot root must not be writable by the ftp user; uploads go to incoming/.
	mkdir -p "$dir/root/incoming"
	chown root:root "$dir/root"
	chmod 0755 "$dir" "$dir/root"
	chown ftp:ftp "$dir/root/incoming"
	chmod 0755 "$dir/root/incoming"

	# Only keys vsftpd 3.0.3 knows: an unknown key makes it exit silently.
	cat >"$dir/vsftpd.conf" <<EOF
listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port=$port
background=YES
anonymous_enable=YES
local_enable=NO
no_anon_password=YES
anon_root=$dir/root
write_enable=YES
anon_upload_enable=YES
anon_mkdir_write_enable=YES
anon_other_write_enable=YES
anon_world_readable_only=NO
anon_umask=022
pasv_enable=YES
pasv_address=127.0.0.1
pasv_min_port=$((port + 1))
pasv_max_port=$((port + 10))
connect_from_port_20=NO
secure_chroot_dir=/var/run/vsftpd/empty
xferlog_enable=YES
vsftpd_log_file=$dir/vsftpd.log
EOF
	if [[ -n "$tls" ]]; then
		gencerts "$dir"
		cat >>"$dir/vsftpd.conf" <<EOF
ssl_enable=YES
allow_anon_ssl=YES
force_anon_logins_ssl=YES
force_anon_data_ssl=YES
implicit_ssl=$([[ $tls == implicit ]] && echo YES || echo NO)
rsa_cert_file=$dir/server.pem
rsa_private_key_file=$dir/server.key
require_ssl_reuse=YES
EOF
	fi
	chown root:root "$dir/vsftpd.conf"
	chmod 0644 "$dir/vsftpd.conf"

	# background=YES: vsftpd forks and the parent exits; stdio is detached so
	# a Go test's exec.Cmd does not wait on an inherited pipe.
	setsid "$BIN" "$dir/vsftpd.conf" </dev/null >>"$dir/vsftpd.out" 2>&1 ||
		{ cat "$dir/vsftpd.out" >&2; die "vsftpd failed to start"; }
	local i pid=
	for ((i = 0; i < WAIT * 10; i++)); do
		pid=$(pgrep -o -f "^$BIN $dir/vsftpd.conf\$" || true)
		if [[ -n "$pid" ]] && answers "$port"; then
			echo "$pid" >"$dir/vsftpd.pid"
			echo "vsftpd-peer: vsftpd on 127.0.0.1:$port serving $dir/root (pid $pid${tls:+, $tls TLS, CA $dir/ca.pem})" >&2
			return
		fi
		sleep 0.1
	done
	[[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true
	cat "$dir/vsftpd.out" >&2 2>/dev/null || true
	die "vsftpd did not answer on 127.0.0.1:$port within ${WAIT}s (an unknown config key makes it exit silently)"
}


cmd=${1:-}
shift || true
case "$cmd" in
start) start "$@" ;;
stop) stop "$@" ;;
status) [[ $# -eq 1 ]] || die "usage: $0 status DIR"; alive "$1" ;;
*) die "usage: $0 start DIR PORT [tls|implicit] | stop DIR | status DIR" ;;
esac
