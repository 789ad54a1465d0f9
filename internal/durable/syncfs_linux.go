package durable

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

func syncFS(path string) error {
	return syncFSOf(path, func(f *os.File) error { return unix.Syncfs(int(f.Fd())) })
}

// fsKey names path's file system: its device number.
func fsKey(path string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return "", err
	}
	return fmt.Sprintf("dev %d", st.Dev), nil
}
