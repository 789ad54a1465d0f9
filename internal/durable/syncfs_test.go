package durable

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSyncFS(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "a")
	if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, f} {
		if err := SyncFS(p); err != nil {
			t.Errorf("SyncFS(%s): %v", p, err)
		}
	}
	missing := filepath.Join(dir, "missing")
	if err := SyncFS(missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("SyncFS of a missing path: %v, want an error naming it", err)
	}
	// Writers anywhere on one file system share the syncs.
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o700)
	k1, err1 := fsKey(dir)
	k2, err2 := fsKey(sub)
	if err1 != nil || err2 != nil || k1 != k2 {
		t.Errorf("one file system, two keys: %q %v, %q %v", k1, err1, k2, err2)
	}
	if k3, err := fsKey("/proc"); err == nil && k3 == k1 {
		t.Errorf("/proc and %s have the same key %q", dir, k1)
	}
}
