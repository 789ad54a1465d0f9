package schedules

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sort"
	"sync"
	"time"

	"github.com/edigw/edigw/spool"
	"github.com/robfig/cron/v3"
)

// Scheduler runs each Poll on its cron schedule. Every job runs in its own
// goroutine, so a slow or unreachable server delays only its own poll; a
// tick that comes while the poll's previous run is still going is skipped.
type Scheduler struct {
	runner *Runner
	cron   *cron.Cron
	ctx    context.Context // cancelled by Stop: runs in progress end
	stop   context.CancelFunc

	mu   sync.Mutex
	jobs map[string]*job
	wg   sync.WaitGroup // runs in progress
}

type job struct {
	poll  Poll
	entry cron.EntryID // 0 for a poll without schedule
	mu    sync.Mutex   // held while a run of this poll goes on in this process
}

// NewScheduler returns a stopped scheduler that runs polls with r.
func NewScheduler(r *Runner) *Scheduler {
	ctx, stop := context.WithCancel(context.Background())
	return &Scheduler{runner: r, cron: cron.New(), ctx: ctx, stop: stop, jobs: map[string]*job{}}
}

// Start starts the cron clock.
func (s *Scheduler) Start() { s.cron.Start() }

// Stop stops scheduling, cancels runs in progress (each records how far it
// got) and waits for them, or for ctx.
func (s *Scheduler) Stop(ctx context.Context) {
	// A tick cron has just started may not have reached its wg.Add yet:
	// wait for cron's own jobs to end before waiting for s.wg.
	ticks := s.cron.Stop()
	s.stop()
	done := make(chan struct{})
	go func() { <-ticks.Done(); s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// Set replaces the polls (start-up and every reload): a poll that is new or
// whose settings changed gets a new job, a poll no longer listed loses its
// job; unchanged polls keep theirs. A run in progress finishes with the
// settings it started with.
func (s *Scheduler) Set(polls []Poll) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	for _, p := range polls {
		k := p.Key()
		seen[k] = true
		if old, ok := s.jobs[k]; ok {
			if samePoll(old.poll, p) {
				continue
			}
			s.remove(old)
		}
		j := &job{poll: p}
		if p.Schedule != nil {
			j.entry = s.cron.Schedule(p.Schedule, cron.FuncJob(func() { s.tick(j) }))
		}
		s.jobs[k] = j
		s.runner.Log.Info("poll scheduled", "partner", p.Partner, "poll", p.Name, "where", p.Where)
	}
	for k, j := range s.jobs {
		if !seen[k] {
			s.remove(j)
			delete(s.jobs, k)
			s.runner.Log.Info("poll unscheduled", "partner", j.poll.Partner, "poll", j.poll.Name)
		}
	}
}

func (s *Scheduler) remove(j *job) {
	if j.entry != 0 {
		s.cron.Remove(j.entry)
	}
}

// samePoll compares the settings of two polls (Dial functions are rebuilt on
// every reload, so they are left out; the Where URL stands for them).
func samePoll(a, b Poll) bool {
	a.Dial, b.Dial = nil, nil
	return reflect.DeepEqual(a, b)
}

// tick is a scheduled run: after the jitter, unless the previous run is
// still going.
func (s *Scheduler) tick(j *job) {
	s.wg.Add(1)
	defer s.wg.Done()
	if !j.mu.TryLock() {
		s.runner.Log.Warn("poll tick skipped: the previous run is still going", "partner", j.poll.Partner, "poll", j.poll.Name)
		return
	}
	defer j.mu.Unlock()
	tick := s.cron.Entry(j.entry).Prev // the scheduled time cron fired for
	if d := j.poll.Jitter; d > 0 {
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(rand.N(d)):
		}
	}
	if tick.IsZero() {
		tick = time.Now()
	}
	_, err := s.runner.RunTick(s.ctx, &j.poll, tick)
	if errors.Is(err, spool.ErrPollBusy) {
		s.runner.Log.Warn("poll tick skipped: running elsewhere", "partner", j.poll.Partner, "poll", j.poll.Name, "err", err)
	}
}

// ErrUnknownPoll: no poll of that name is configured.
var ErrUnknownPoll = errors.New("no such poll")

// RunNow runs a poll at once, without jitter, and waits for it. It returns
// ErrPollBusy (wrapped) if the poll is running.
func (s *Scheduler) RunNow(ctx context.Context, partner, poll, who string) (spool.PollRun, error) {
	s.mu.Lock()
	j := s.jobs[partner+"/"+poll]
	s.mu.Unlock()
	if j == nil {
		return spool.PollRun{}, fmt.Errorf("partner %s: poll %s: %w", partner, poll, ErrUnknownPoll)
	}
	if !j.mu.TryLock() {
		return spool.PollRun{}, fmt.Errorf("partner %s: poll %s: %w (in this process)", partner, poll, spool.ErrPollBusy)
	}
	defer j.mu.Unlock()
	s.wg.Add(1)
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()
	return s.runner.Run(ctx, &j.poll, "manual:"+who)
}

// Info describes a scheduled poll.
type Info struct {
	Poll
	Next time.Time // zero without a schedule
}

// Polls lists the polls by key, with their next scheduled run.
func (s *Scheduler) Polls() []Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Info, 0, len(s.jobs))
	for _, j := range s.jobs {
		i := Info{Poll: j.poll}
		if j.entry != 0 {
			i.Next = s.cron.Entry(j.entry).Next
		}
		out = append(out, i)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Key() < out[b].Key() })
	return out
}
