package durable

import "fmt"

// SyncFS makes everything written so far on the file system holding path
// durable: the data of every file, their inodes and the directory entries
// made or removed (syncfs(2) on Linux). Concurrent calls on one file system
// share the calls, as SyncDir's do: a call returns after a sync that began
// after it did.
//
// It is for stores that write many small files at once (the directory
// archive, outboxes): their writers create, write and link without fsync,
// then call SyncFS once before they report the files stored. Where each
// file and its directory took an fsync of their own, a few synchronous
// writes each, one sync now covers all the files that concurrent writers
// made meanwhile (bench e2e: see docs/benchmarks.md, "End to end"). It also
// writes back whatever else is dirty on that file system, so keep the data
// directory on a file system of its own if something else writes a lot
// there.
func SyncFS(path string) error {
	key, err := fsKey(path)
	if err != nil {
		return fmt.Errorf("sync file system of %s: %w", path, err)
	}
	if err := fsSyncs.sync(key, func(string) error { return syncFS(path) }); err != nil {
		return fmt.Errorf("sync file system of %s: %w", path, err)
	}
	return nil
}

var fsSyncs = &coalescer{paths: map[string]*pathSync{}}
