// Package schedules runs the partners' poll channels: cron jobs that list a
// remote folder, fetch the files that are complete into the spool, and only
// then delete, move or remember them. Each run takes a lease in the spool
// (so a run never overlaps another of the same poll, in this process or any
// other) and is recorded with what it saw, fetched, skipped and why it
// failed.
//
// The package knows nothing of file formats or partner profiles: the
// gateway turns each profile's poll into a Poll, with a Dial function for
// the transport and a Sink that spools the bytes.
package schedules

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"slices"
	"sync"
	"time"

	"github.com/edigw/edigw/spool"
	"github.com/robfig/cron/v3"
)

// File is a regular file in the remote folder.
type File struct {
	Name    string
	Size    int64
	ModTime time.Time
}

// Remote is the part of a transport a poll uses. Names are plain file names
// in the polled folder.
type Remote interface {
	List(ctx context.Context) ([]File, error)
	Open(ctx context.Context, name string) (io.ReadCloser, error)
	Remove(ctx context.Context, name string) error
	Move(ctx context.Context, name, dir string) error
	Close() error
}

// Fetched describes a file being spooled.
type Fetched struct {
	Partner, Poll string
	Name          string
	Where         string // the remote folder's URL, for the record
	Size          int64
	ModTime       time.Time
}

// Sink makes a fetched file durable in the spool and returns its spool ID.
// It must not return before the bytes and the record are durable, and must
// fail (recording nothing) if r fails: r reports a short or broken transfer
// as an error at its end.
type Sink func(ctx context.Context, f Fetched, r io.Reader) (spool.ID, error)

// Action is what happens to a remote file once it is spooled.
type Action string

const (
	Delete Action = "delete"
	Move   Action = "move"
	Keep   Action = "keep"
)

// Poll is one poll channel.
type Poll struct {
	Partner, Name string
	Where         string        // the remote folder's URL (no secrets), for messages
	Schedule      cron.Schedule // nil: run only when asked
	Jitter        time.Duration // random delay before each scheduled run
	Pattern       string        // path.Match glob on the file name; "" = "*"
	// A file is fetched once its size and modification time have not
	// changed for StableFor (0 = at once) or, with TriggerSuffix, once a
	// file named NAME+TriggerSuffix exists (it is removed along with NAME).
	StableFor     time.Duration
	TriggerSuffix string
	After         Action
	MoveDir       string // for Move
	MaxFiles      int    // per run; 0 = no cap
	// Concurrency is the number of files fetched at once over the one
	// connection (transports that cannot multiplex must say 1).
	Concurrency int
	Dial        func(ctx context.Context) (Remote, error)
}

// Key names the poll: "partner/name".
func (p *Poll) Key() string { return p.Partner + "/" + p.Name }

// Runner runs polls. It is safe for concurrent use.
type Runner struct {
	Store spool.Polls
	Sink  Sink
	Owner string // this process, for leases
	Log   *slog.Logger
	// Lease is how long a run's lease lasts without renewal (default 2m);
	// it is renewed every third of it while the run goes on.
	Lease time.Duration
	// MaxSettle bounds how long a run waits for files that are not yet
	// stable to settle before re-listing them once (default 1m); files that
	// need longer are fetched by a later run.
	MaxSettle time.Duration
	// Now replaces time.Now (tests).
	Now func() time.Time
	// OnRun, when set, is told of every finished run (for metrics).
	OnRun func(spool.PollRun)
}

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// maxErrors bounds the error lines a run keeps.
const maxErrors = 20

// Run runs p once. It returns ErrPollBusy (wrapped) if another run of p
// holds the lease; otherwise the recorded run, whose Status says how it went
// (the error is also set when the run failed as a whole).
func (r *Runner) Run(ctx context.Context, p *Poll, trigger string) (spool.PollRun, error) {
	return r.run(ctx, p, trigger, time.Time{})
}

// RunTick runs p for its scheduled tick (the time cron fired it): a tick
// that already ran — on another node whose cron fired a moment earlier —
// is refused with ErrPollBusy, so each tick runs once in a cluster.
func (r *Runner) RunTick(ctx context.Context, p *Poll, tick time.Time) (spool.PollRun, error) {
	return r.run(ctx, p, "schedule", tick.Truncate(time.Second))
}

func (r *Runner) run(ctx context.Context, p *Poll, trigger string, tick time.Time) (spool.PollRun, error) {
	lease := cmp.Or(r.Lease, 2*time.Minute)
	run, err := r.Store.BeginRun(ctx, spool.NewRun{Partner: p.Partner, Poll: p.Name, Owner: r.Owner, Trigger: trigger, Tick: tick}, lease)
	if err != nil {
		return run, fmt.Errorf("partner %s: poll %s: %w", p.Partner, p.Name, err)
	}
	log := r.Log.With("partner", p.Partner, "poll", p.Name, "run", run.ID)
	log.Info("poll run started", "where", p.Where, "trigger", trigger)

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	renewed := make(chan struct{})
	go func() { // keep the lease while the run goes on; stop the run if it is lost
		defer close(renewed)
		t := time.NewTicker(lease / 3)
		defer t.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-t.C:
				if err := r.Store.ExtendRun(rctx, run.ID, lease); err != nil && rctx.Err() == nil {
					log.Error("poll run lost its lease; stopping", "err", err)
					cancel()
					return
				}
			}
		}
	}()

	s := &pollRun{Runner: r, p: p, run: &run, log: log}
	runErr := s.do(rctx)
	cancel()
	<-renewed
	switch {
	case runErr != nil:
		run.Status = spool.RunFailed
		s.fail("", runErr)
	case run.Failed > 0:
		run.Status = spool.RunPartial
	default:
		run.Status = spool.RunOK
	}
	// The run's own context may be cancelled (shutdown): the record is still written.
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer fcancel()
	if err := r.Store.FinishRun(fctx, run); err != nil {
		log.Error("poll run: recording the end failed", "err", err)
	}
	log.Info("poll run finished", "status", run.Status, "seen", run.Seen, "fetched", run.Fetched,
		"skipped", run.Skipped, "failed", run.Failed)
	if r.OnRun != nil {
		r.OnRun(run)
	}
	if runErr != nil {
		return run, fmt.Errorf("partner %s: poll %s: %w", p.Partner, p.Name, runErr)
	}
	return run, nil
}

// pollRun is the state of one run.
type pollRun struct {
	*Runner
	p   *Poll
	run *spool.PollRun
	log *slog.Logger

	mu     sync.Mutex // guards run's counters and Errors during fetches
	remote Remote
	mem    map[string]spool.RemoteFile
}

func (s *pollRun) fail(name string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if name != "" {
		s.run.Failed++
	}
	if len(s.run.Errors) < maxErrors {
		if name != "" {
			s.run.Errors = append(s.run.Errors, name+": "+err.Error())
		} else {
			s.run.Errors = append(s.run.Errors, err.Error())
		}
	}
	s.log.Warn("poll: file failed", "file", name, "err", err)
}

func (s *pollRun) count(f func(*spool.PollRun)) {
	s.mu.Lock()
	f(s.run)
	s.mu.Unlock()
}

func (s *pollRun) do(ctx context.Context) error {
	remote, err := s.p.Dial(ctx)
	if err != nil {
		return err
	}
	s.remote = remote
	defer remote.Close()
	if s.mem, err = s.Store.RemoteFiles(ctx, s.p.Partner, s.p.Name); err != nil {
		return err
	}
	listing, err := remote.List(ctx)
	if err != nil {
		return fmt.Errorf("list %s: %w", s.p.Where, err)
	}
	ready, waiting, err := s.sort(ctx, listing)
	if err != nil {
		return err
	}
	if len(waiting) > 0 {
		more, err := s.settle(ctx, waiting)
		if err != nil {
			return err
		}
		ready = append(ready, more...)
	}
	// Oldest first: partners' documents often depend on their order (an 850
	// before its 860).
	slices.SortFunc(ready, func(a, b File) int {
		return cmp.Or(a.ModTime.Compare(b.ModTime), cmp.Compare(a.Name, b.Name))
	})
	if cap := s.p.MaxFiles; cap > 0 && len(ready) > cap {
		s.run.Skipped += len(ready) - cap
		ready = ready[:cap]
	}
	s.fetchAll(ctx, ready)
	return nil
}

// sort looks at a listing: it finishes what an earlier run left half done
// (a spooled file whose after-fetch action did not happen), updates what the
// poll remembers, and splits the matching files into ready to fetch and
// waiting to be stable.
func (s *pollRun) sort(ctx context.Context, listing []File) (ready, waiting []File, err error) {
	now := s.now()
	listed := make(map[string]File, len(listing))
	for _, f := range listing {
		listed[f.Name] = f
	}
	var forget []string
	for name := range s.mem {
		if _, ok := listed[name]; !ok {
			forget = append(forget, name) // gone: deleted or moved, by us or the partner
		}
	}
	if len(forget) > 0 {
		if err := s.Store.ForgetRemoteFiles(ctx, s.p.Partner, s.p.Name, forget); err != nil {
			return nil, nil, err
		}
	}
	for _, f := range listing {
		if !s.matches(f.Name) {
			continue
		}
		s.run.Seen++
		m, known := s.mem[f.Name]
		same := known && unchanged(m, f)
		if known && m.FileID != "" {
			switch {
			case !m.Done && (same || s.p.After != Keep):
				// Spooled by an earlier run that stopped before the
				// after-fetch action: do it now, never fetch it again.
				s.log.Info("poll: completing the after-fetch action of an earlier run", "file", f.Name, "message_id", m.FileID)
				if err := s.afterFetch(ctx, f.Name, m); err != nil {
					s.fail(f.Name, err)
				}
				s.run.Skipped++
				continue
			case same:
				s.run.Skipped++ // kept and already fetched
				continue
			}
			// Same name, new content: a new file.
		}
		switch {
		case s.p.TriggerSuffix != "":
			if _, ok := listed[f.Name+s.p.TriggerSuffix]; ok {
				ready = append(ready, f)
			} else {
				s.run.Skipped++
			}
			continue
		case s.p.StableFor <= 0:
			ready = append(ready, f)
			continue
		case same && now.Sub(m.Since) >= s.p.StableFor:
			ready = append(ready, f)
			continue
		case !same:
			if err := s.observe(ctx, f, now); err != nil {
				return nil, nil, err
			}
		}
		waiting = append(waiting, f)
	}
	return ready, waiting, nil
}

// observe remembers f's size and modification time as first seen now.
func (s *pollRun) observe(ctx context.Context, f File, now time.Time) error {
	m := spool.RemoteFile{Partner: s.p.Partner, Poll: s.p.Name, Name: f.Name, Size: f.Size, ModTime: f.ModTime, Since: now}
	s.mem[f.Name] = m
	return s.Store.PutRemoteFile(context.WithoutCancel(ctx), m)
}

// unchanged reports whether f is listed as remembered in m. Modification
// times are compared to the microsecond, the precision the store keeps (a
// local folder lists nanoseconds: compared exactly, a remembered file would
// never be the same again).
func unchanged(m spool.RemoteFile, f File) bool {
	return m.Size == f.Size && m.ModTime.Truncate(time.Microsecond).Equal(f.ModTime.Truncate(time.Microsecond))
}

// settle waits until the first waiting file would be stable, if that is
// within MaxSettle, lists again and returns the waiting files that did not
// change meanwhile. The others count as skipped: a later run looks again.
func (s *pollRun) settle(ctx context.Context, waiting []File) ([]File, error) {
	first := time.Time{}
	for _, f := range waiting {
		if at := s.mem[f.Name].Since.Add(s.p.StableFor); first.IsZero() || at.Before(first) {
			first = at
		}
	}
	wait := first.Sub(s.now())
	if wait > cmp.Or(s.MaxSettle, time.Minute) {
		s.run.Skipped += len(waiting)
		return nil, nil
	}
	s.log.Debug("poll: waiting for files to settle", "files", len(waiting), "wait", wait)
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(wait):
	}
	listing, err := s.remote.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", s.p.Where, err)
	}
	listed := make(map[string]File, len(listing))
	for _, f := range listing {
		listed[f.Name] = f
	}
	now := s.now()
	var ready []File
	for _, f := range waiting {
		m := s.mem[f.Name]
		g, ok := listed[f.Name]
		switch {
		case !ok:
			s.run.Skipped++ // vanished meanwhile
		case unchanged(m, g) && now.Sub(m.Since) >= s.p.StableFor:
			ready = append(ready, g)
		case unchanged(m, g):
			s.run.Skipped++ // unchanged but not stable yet: it keeps its Since
		default:
			s.run.Skipped++ // still changing
			if err := s.observe(ctx, g, now); err != nil {
				return nil, err
			}
		}
	}
	return ready, nil
}

func (s *pollRun) matches(name string) bool {
	if s.p.TriggerSuffix != "" && len(name) > len(s.p.TriggerSuffix) && name[len(name)-len(s.p.TriggerSuffix):] == s.p.TriggerSuffix {
		return false // a trigger file, not data
	}
	if s.p.Pattern == "" {
		return true
	}
	ok, _ := path.Match(s.p.Pattern, name)
	return ok
}

// fetchAll fetches files with up to Concurrency at once; each failure is
// recorded and the file is left for the next run.
func (s *pollRun) fetchAll(ctx context.Context, files []File) {
	n := max(1, s.p.Concurrency)
	next := make(chan File)
	var wg sync.WaitGroup
	for range min(n, len(files)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range next {
				if err := s.fetch(ctx, f); err != nil {
					s.fail(f.Name, err)
				}
			}
		}()
	}
	for _, f := range files {
		if ctx.Err() != nil {
			break
		}
		next <- f
	}
	close(next)
	wg.Wait()
}

// fetch spools one file, remembers that it did, then applies the
// after-fetch action. A crash between two of these steps is completed by
// the next run (see sort), so nothing is fetched twice or left behind.
func (s *pollRun) fetch(ctx context.Context, f File) error {
	rc, err := s.remote.Open(ctx, f.Name)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	cr := &checkedReader{rc: rc, want: f.Size}
	id, err := s.Sink(ctx, Fetched{Partner: s.p.Partner, Poll: s.p.Name, Name: f.Name, Where: s.p.Where, Size: f.Size, ModTime: f.ModTime}, cr)
	cr.Close()
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	m := spool.RemoteFile{Partner: s.p.Partner, Poll: s.p.Name, Name: f.Name, Size: f.Size, ModTime: f.ModTime,
		Since: s.now(), FileID: id, FetchedAt: s.now(), Done: s.p.After == Keep}
	// The file is in the spool: record it even if the run is being stopped.
	if err := s.Store.PutRemoteFile(context.WithoutCancel(ctx), m); err != nil {
		return fmt.Errorf("spooled as %s, but remembering it failed: %w", id, err)
	}
	s.count(func(r *spool.PollRun) { r.Fetched++ })
	s.log.Info("poll: file fetched", "message_id", id, "file", f.Name, "size", f.Size)
	if s.p.After == Keep {
		return nil
	}
	return s.afterFetch(ctx, f.Name, m)
}

// afterFetch deletes or moves a spooled file (and its trigger file), then
// forgets it: a file of the same name that appears later is a new file.
func (s *pollRun) afterFetch(ctx context.Context, name string, m spool.RemoteFile) error {
	var err error
	switch s.p.After {
	case Delete:
		err = s.remote.Remove(ctx, name)
	case Move:
		err = s.remote.Move(ctx, name, s.p.MoveDir)
	case Keep:
		m.Done = true
		return s.Store.PutRemoteFile(context.WithoutCancel(ctx), m)
	default:
		return fmt.Errorf("unknown after-fetch action %q", s.p.After)
	}
	if err != nil {
		return fmt.Errorf("spooled as %s; after-fetch %s failed (retried next run): %w", m.FileID, s.p.After, err)
	}
	if s.p.TriggerSuffix != "" {
		if err := s.remote.Remove(ctx, name+s.p.TriggerSuffix); err != nil {
			s.log.Warn("poll: removing the trigger file failed", "file", name+s.p.TriggerSuffix, "err", err)
		}
	}
	return s.Store.ForgetRemoteFiles(context.WithoutCancel(ctx), s.p.Partner, s.p.Name, []string{name})
}

// checkedReader turns a transfer that ends early, runs long or fails on
// close into an error at its end, so the sink records nothing.
type checkedReader struct {
	rc     io.ReadCloser
	want   int64
	got    int64
	closed bool
}

// Close closes the transfer once.
func (c *checkedReader) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	return c.rc.Close()
}

// errShort marks a transfer that did not deliver the listed size.
var errShort = errors.New("transfer incomplete")

func (c *checkedReader) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	c.got += int64(n)
	if c.got > c.want {
		return n, fmt.Errorf("%w: the file grew during the fetch (listed %d bytes, read more)", errShort, c.want)
	}
	if err == io.EOF {
		if cerr := c.Close(); cerr != nil {
			return n, fmt.Errorf("%w: closing the transfer: %v", errShort, cerr)
		}
		if c.got != c.want {
			return n, fmt.Errorf("%w: read %d of %d bytes", errShort, c.got, c.want)
		}
	}
	return n, err
}
