package durable

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// syncFS opens path (a file or directory) and syncs its file system.
func syncFS(path string) error {
	f, err := os.Open(filepath.Clean(path))
	if err != nil {
		return err
	}
	err = unix.Syncfs(int(f.Fd()))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// fsKey names path's file system: its device number.
func fsKey(path string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return "", err
	}
	return fmt.Sprintf("dev %d", st.Dev), nil
}
