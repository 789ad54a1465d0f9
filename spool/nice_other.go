//go:build !linux

package spool

import (
	"errors"
	"runtime"
)

func setThreadNice(int) (int, error) {
	return 0, errors.New("a thread's priority can only be set on Linux, not " + runtime.GOOS)
}
