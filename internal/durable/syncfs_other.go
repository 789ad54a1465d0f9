//go:build !linux

package durable

import (
	"errors"
	"runtime"
)

// syncFS exists on Linux only. Elsewhere SyncFS fails, so a store that
// relies on it refuses to report anything stored that is not durable.
func syncFS(string) error {
	return errors.New("syncfs is not available on " + runtime.GOOS + "; edigw's directory stores need Linux")
}

func fsKey(string) (string, error) { return "all", nil }
