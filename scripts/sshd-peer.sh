#!/usr/bin/env bash
# sshd-peer.sh — a throwaway OpenSSH sshd on loopback, for tests of our SFTP
# client (gateway/transport). Idempotent; never touches the system sshd.
#
#   scripts/sshd-peer.sh start DIR PORT   serve on 127.0.0.1:PORT with the config, host key (DIR/host,
#                                         DIR/host.pub) and client key (DIR/client, DIR/client.pub) in DIR;
#                                         the current user logs in with DIR/client; pid in DIR/sshd.pid,
#                                         log in DIR/sshd.log. Prints the host key fingerprint
#                                         (ssh-keygen -lf DIR/host.pub -E sha256) on stdout.
#   scripts/sshd-peer.sh stop DIR         stop the sshd started on DIR (by its pid)
#   scripts/sshd-peer.sh status DIR       exit 0 if it is running
#
# As root, a missing /usr/sbin/sshd is installed with apt-get (openssh-server);
# apt does not start the system daemon. Env: SSHD_PEER_WAIT seconds (default 20).
set -euo pipefail

SSHD=/usr/sbin/sshd # sshd must be started by absolute path
WAIT="${SSHD_PEER_WAIT:-20}"

die() { echo "sshd-peer: $*" >&2; exit 1; }
PIDFILE_NAME=sshd.pid
# shellcheck source=peer-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/peer-lib.sh"



fingerprint() { ssh-keygen -lf "$1/host.pub" -E sha256; }

ensure_sshd() {
	if [[ -x "$SSHD" ]] && command -v ssh-keygen >/dev/null; then
		return
	fi
	if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
		echo "sshd-peer: installing openssh-server ..." >&2
		export DEBIAN_FRONTEND=noninteractive
		apt-get install -y -qq openssh-server openssh-client >/dev/null 2>&1 || {
			apt-get update -qq >/dev/null 2>&1 || true
			apt-get install -y -qq openssh-server openssh-client >/dev/null
		}
	fi
	[[ -x "$SSHD" ]] || die "$SSHD is missing (apt-get install -y openssh-server)"
	command -v ssh-keygen >/dev/null || die "ssh-keygen is missing (apt-get install -y openssh-client)"
}

start() {
	[[ $# -eq 2 ]] || die "usage: $0 start DIR PORT"
	local dir=$1 port=$2 user
	[[ "$port" =~ ^[0-9]+$ ]] || die "bad port: $port"
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	[[ "$dir" != *[[:space:]]* ]] || die "DIR must not contain spaces: $dir"
	if alive "$dir"; then
		answers "$port" || die "sshd pid $(cat "$dir/sshd.pid") runs on $dir but 127.0.0.1:$port does not answer"
		echo "sshd-peer: already running on 127.0.0.1:$port (pid $(cat "$dir/sshd.pid"))" >&2
		fingerprint "$dir"
		return
	fi
	if answers "$port"; then
		die "127.0.0.1:$port is already in use by another process"
	fi
	ensure_sshd
	mkdir -p -m0755 /run/sshd 2>/dev/null || true # sshd refuses to start without it (as root)
	[[ -f "$dir/host" ]] || ssh-keygen -q -t ed25519 -N '' -C sshd-peer-host -f "$dir/host"
	[[ -f "$dir/client.pub" ]] || ssh-keygen -q -t ed25519 -N '' -C sshd-peer-client -f "$dir/client"
	user=$(id -un)
	cat >"$dir/sshd_config" <<CONF
ListenAddress 127.0.0.1
Port $port
HostKey $dir/host
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/client.pub
AllowUsers $user
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
ChrootDirectory none
X11Forwarding no
AllowTcpForwarding no
PrintMotd no
LogLevel VERBOSE
Subsystem sftp internal-sftp
CONF
	rm -f "$dir/sshd.pid"
	# -E: log to a file; sshd daemonizes and writes its pid file once listening.
	"$SSHD" -f "$dir/sshd_config" -E "$dir/sshd.log" </dev/null >/dev/null 2>&1 ||
		{ tail -n 20 "$dir/sshd.log" >&2 || true; die "$SSHD failed to start"; }
	local i
	for ((i = 0; i < WAIT * 10; i++)); do
		if [[ -f "$dir/sshd.pid" ]] && answers "$port"; then
			echo "sshd-peer: sshd on 127.0.0.1:$port for user $user (pid $(cat "$dir/sshd.pid"), dir $dir)" >&2
			fingerprint "$dir"
			return
		fi
		sleep 0.1
	done
	tail -n 20 "$dir/sshd.log" >&2 || true
	stop "$dir"
	die "sshd did not answer on 127.0.0.1:$port within ${WAIT}s"
}


cmd=${1:-}
shift || true
case "$cmd" in
start) start "$@" ;;
stop) stop "$@" ;;
status) [[ $# -eq 1 ]] || die "usage: $0 status DIR"; alive "$1" ;;
*) die "usage: $0 start DIR PORT | stop DIR | status DIR" ;;
esac
