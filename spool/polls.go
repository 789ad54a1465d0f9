package spool

import (
	"context"
	"errors"
	"time"
)

// Polls keeps the state of scheduled polls (the schedules package): who is
// running a poll now (a lease, so two processes or nodes never poll the same
// remote folder at once), the history of runs, and what each poll has seen
// in its remote folder (to judge when a file is stable, and to remember what
// was fetched so it is neither fetched twice nor left behind after a crash).
// A poll is named by (partner, poll).
type Polls interface {
	// BeginRun records a run of (partner, poll) in RunRunning and leases
	// the poll to owner until now+lease. ErrPollBusy (wrapped, naming the
	// holder and the expiry) if another run holds a valid lease, or if
	// NewRun.Tick is set and a run for that tick exists already (each
	// scheduled tick runs once, on one node); a run whose lease expired is
	// marked RunAbandoned first (its process died).
	BeginRun(ctx context.Context, r NewRun, lease time.Duration) (PollRun, error)

	// ExtendRun moves the run's lease to now+lease. ErrLeaseLost if the run
	// no longer holds it (it expired and another run began).
	ExtendRun(ctx context.Context, runID int64, lease time.Duration) error

	// FinishRun stores the run's outcome (Status, EndedAt = now, counts,
	// Errors) and releases the poll's lease if the run still holds it.
	FinishRun(ctx context.Context, r PollRun) error

	// ListRuns returns runs newest first.
	ListRuns(ctx context.Context, f RunFilter) ([]PollRun, error)

	// RemoteFiles returns what (partner, poll) remembers of its folder,
	// by file name.
	RemoteFiles(ctx context.Context, partner, poll string) (map[string]RemoteFile, error)

	// PutRemoteFile inserts or replaces the memory of one remote file.
	PutRemoteFile(ctx context.Context, f RemoteFile) error

	// ForgetRemoteFiles deletes the memory of the named files.
	ForgetRemoteFiles(ctx context.Context, partner, poll string, names []string) error
}

// ErrPollBusy: another run holds the poll's lease.
var ErrPollBusy = errors.New("poll is running elsewhere")

// RunStatus is the outcome of a poll run.
type RunStatus string

const (
	RunRunning   RunStatus = "running"
	RunOK        RunStatus = "ok"        // every selected file fetched (or none to fetch)
	RunPartial   RunStatus = "partial"   // some files failed; they are retried next run
	RunFailed    RunStatus = "failed"    // nothing could be done (connect or list failed)
	RunAbandoned RunStatus = "abandoned" // the process died; found when its lease expired
)

// NewRun is the input of BeginRun.
type NewRun struct {
	Partner string // required
	Poll    string // required
	Owner   string // the node/process running it, required
	Trigger string // "schedule" or "manual:<who>"
	// Tick is the scheduled time a "schedule" run is for (zero for manual
	// runs): at most one run per tick.
	Tick time.Time
}

// PollRun is one run of a poll.
type PollRun struct {
	ID         int64
	Partner    string
	Poll       string
	Owner      string
	Trigger    string
	Status     RunStatus
	StartedAt  time.Time
	EndedAt    time.Time // zero while running
	LeaseUntil time.Time
	// Seen counts the files listed that match the pattern; Fetched those
	// spooled in this run; Skipped those left for later (not yet stable,
	// over the per-run cap, already fetched); Failed those that failed.
	Seen, Fetched, Skipped, Failed int
	Errors                         []string // one line per failure, first ones kept
}

// RunFilter selects runs for ListRuns.
type RunFilter struct {
	Partner string // "" = any
	Poll    string // "" = any
	Limit   int    // default 50
}

// RemoteFile is what a poll remembers of one file in its remote folder.
type RemoteFile struct {
	Partner, Poll, Name string
	// Size and ModTime as last listed; Since is when they were first seen
	// with these values (the file is stable once Since is old enough).
	Size    int64
	ModTime time.Time
	Since   time.Time
	// FileID is the spool file it was fetched into (empty until fetched),
	// FetchedAt when. Done is set once the after-fetch action (delete,
	// move) was applied, or at once for "keep".
	FileID    ID
	FetchedAt time.Time
	Done      bool
}
