package spool

import "golang.org/x/sys/unix"

// setThreadNice gives the calling OS thread the nice value n (Linux keeps
// one per thread) and returns the thread's id.
func setThreadNice(n int) (tid int, err error) {
	tid = unix.Gettid()
	return tid, unix.Setpriority(unix.PRIO_PROCESS, tid, n)
}
