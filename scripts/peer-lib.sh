# peer-lib.sh: what the test-peer scripts (s3server.sh, sshd-peer.sh,
# vsftpd-peer.sh) share. Source it after setting PIDFILE_NAME (the pid file's
# name inside the peer's DIR) and defining die().

# alive DIR: the peer started on DIR is running.
alive() { [[ -f "$1/$PIDFILE_NAME" ]] && kill -0 "$(cat "$1/$PIDFILE_NAME")" 2>/dev/null; }

# answers PORT: something accepts TCP connections on 127.0.0.1:PORT.
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# stop DIR: stop the peer started on DIR by its pid (TERM, then KILL after
# 10 s); idempotent.
stop() {
	[[ $# -eq 1 ]] || die "usage: $0 stop DIR"
	local dir=$1 pid i
	[[ -f "$dir/$PIDFILE_NAME" ]] || return 0
	pid=$(cat "$dir/$PIDFILE_NAME")
	if kill -0 "$pid" 2>/dev/null; then
		kill "$pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
	fi
	rm -f "$dir/$PIDFILE_NAME"
}
