package durable

import (
	"os"
	"path/filepath"
	"sync"
)

// SyncDir fsyncs a directory, so that a rename or link into it survives a
// power loss (the file's own fsync does not cover its directory entry).
//
// Concurrent calls for the same directory share fsyncs: a call returns
// after an fsync of dir that began after the call did, so it covers every
// entry made before the call, but when such an fsync is already wanted by
// other callers, they all wait for that one. Many workers link into the
// same few directories (a partner's outbox, the archive's day folder, a
// blob shard the same document lands in), and on a file system without a
// journal each directory fsync is its own synchronous write: sharing them
// cut the gateway's directory fsyncs by a third under load.
func SyncDir(dir string) error { return dirSyncs.sync(filepath.Clean(dir), fsyncDir) }

func fsyncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

var dirSyncs = &coalescer{paths: map[string]*pathSync{}}

// coalescer runs at most one fsync per path at a time, and at most one more
// queued behind it for all the callers that arrive meanwhile.
type coalescer struct {
	mu    sync.Mutex
	paths map[string]*pathSync
}

type pathSync struct {
	running bool
	next    *round // wanted by callers that arrived while an fsync ran
}

type round struct {
	done chan struct{}
	err  error
}

func (c *coalescer) sync(path string, fsync func(string) error) error {
	c.mu.Lock()
	p := c.paths[path]
	if p == nil {
		p = &pathSync{}
		c.paths[path] = p
	}
	if p.running {
		// The running fsync may have begun before this caller's change.
		if p.next == nil {
			p.next = &round{done: make(chan struct{})}
		}
		r := p.next
		c.mu.Unlock()
		<-r.done
		return r.err
	}
	p.running = true
	c.mu.Unlock()
	err := fsync(path)
	c.drain(path, p, fsync, false)
	return err
}

// drain runs the rounds queued behind the fsync that just finished, then
// marks path idle. The caller that ran the first fsync hands them to a
// goroutine (async) rather than serving others before it returns, which
// under a steady stream of callers it might never do.
func (c *coalescer) drain(path string, p *pathSync, fsync func(string) error, async bool) {
	for {
		c.mu.Lock()
		r := p.next
		if r == nil {
			p.running = false
			delete(c.paths, path)
			c.mu.Unlock()
			return
		}
		if !async {
			c.mu.Unlock()
			go c.drain(path, p, fsync, true)
			return
		}
		p.next = nil
		c.mu.Unlock()
		r.err = fsync(path)
		close(r.done)
	}
}
