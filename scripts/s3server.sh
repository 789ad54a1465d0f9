#!/usr/bin/env bash
# s3server.sh — a real S3-API server (versitygw, posix backend) on loopback,
# for tests and `make run`. Idempotent.
#
#   scripts/s3server.sh install                       install versitygw if missing; print its path
#   scripts/s3server.sh start DIR PORT ACCESS SECRET  serve DIR on 127.0.0.1:PORT (buckets = subdirectories
#                                                     of DIR); pid in DIR/versitygw.pid, log in DIR/versitygw.log
#   scripts/s3server.sh stop DIR                      stop the server started on DIR (by its pid)
#   scripts/s3server.sh status DIR                    exit 0 if it is running
#
# Clients: endpoint http://127.0.0.1:PORT, path-style addressing, any region
# (us-east-1), the ACCESS/SECRET pair as static credentials.
# Env: VERSITYGW_VERSION (default v1.8.0), S3SERVER_WAIT seconds (default 30).
set -euo pipefail

VERSION="${VERSITYGW_VERSION:-v1.8.0}"
WAIT="${S3SERVER_WAIT:-30}"

die() { echo "s3server: $*" >&2; exit 1; }
PIDFILE_NAME=versitygw.pid
# shellcheck source=peer-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/peer-lib.sh"
command -v go >/dev/null || die "Go is required to install versitygw"
GOBIN_DIR="$(go env GOPATH)/bin"
BIN="$GOBIN_DIR/versitygw"

install() {
	if [[ -x "$BIN" ]]; then
		echo "$BIN"
		return
	fi
	echo "s3server: installing github.com/versity/versitygw/cmd/versitygw@$VERSION (takes ~80 s cold) ..." >&2
	local t0=$SECONDS
	# GOBIN pins the target to GOPATH/bin; GOFLAGS from a module (e.g. -mod=vendor) must not leak in.
	GOBIN="$GOBIN_DIR" GOFLAGS= go install "github.com/versity/versitygw/cmd/versitygw@$VERSION" >&2 ||
		die "go install versitygw@$VERSION failed"
	echo "s3server: installed $BIN in $((SECONDS - t0)) s" >&2
	echo "$BIN"
}



start() {
	[[ $# -eq 4 ]] || die "usage: $0 start DIR PORT ACCESS SECRET"
	local dir=$1 port=$2 access=$3 secret=$4
	[[ "$port" =~ ^[0-9]+$ ]] || die "bad port: $port"
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	if alive "$dir"; then
		answers "$port" || die "versitygw pid $(cat "$dir/versitygw.pid") runs on $dir but 127.0.0.1:$port does not answer"
		echo "s3server: already running on 127.0.0.1:$port (pid $(cat "$dir/versitygw.pid"))" >&2
		return
	fi
	if answers "$port"; then
		die "127.0.0.1:$port is already in use by another process"
	fi
	install >/dev/null
	# setsid + redirected stdio: the server outlives this script and holds
	# no pipe of the caller (a Go test's exec.Cmd would wait on it).
	setsid "$BIN" --access "$access" --secret "$secret" --port "127.0.0.1:$port" posix "$dir" \
		</dev/null >>"$dir/versitygw.log" 2>&1 &
	echo $! >"$dir/versitygw.pid"
	local i
	for ((i = 0; i < WAIT * 10; i++)); do
		if answers "$port"; then
			echo "s3server: versitygw on 127.0.0.1:$port serving $dir (pid $(cat "$dir/versitygw.pid"))" >&2
			return
		fi
		alive "$dir" || { tail -n 20 "$dir/versitygw.log" >&2; rm -f "$dir/versitygw.pid"; die "versitygw exited during start"; }
		sleep 0.1
	done
	tail -n 20 "$dir/versitygw.log" >&2
	stop "$dir"
	die "versitygw did not answer on 127.0.0.1:$port within ${WAIT}s"
}


cmd=${1:-}
shift || true
case "$cmd" in
install) install ;;
start) start "$@" ;;
stop) stop "$@" ;;
status) [[ $# -eq 1 ]] || die "usage: $0 status DIR"; alive "$1" ;;
*) die "usage: $0 install | start DIR PORT ACCESS SECRET | stop DIR | status DIR" ;;
esac
