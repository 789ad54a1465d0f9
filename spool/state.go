package spool

import (
	"fmt"
	"slices"
	"strings"
)

// State is where a file or document is in its life. See the package
// documentation for the machine and [CanTransition] for its edges.
type State string

// The pipeline states, in order.
const (
	StateReceived  State = "received"  // bytes and record durable; nothing else done
	StateParsed    State = "parsed"    // envelopes and sets read and validated
	StateAcked     State = "acked"     // functional acknowledgement produced
	StateMapped    State = "mapped"    // canonical JSON produced (Document.Mapped)
	StateDelivered State = "delivered" // the ERP accepted it (Document.Response)
	StateArchived  State = "archived"  // copied to the archive
	StateDone      State = "done"      // nothing left to do (final)
)

// The states beside the pipeline.
const (
	// StateRejected: bad input, acked negatively. Goes no further than the
	// archive: rejected → archived → done, or dead.
	StateRejected State = "rejected"
	// StateDuplicate: seen before (same content, or same interchange control
	// number within the window); not processed again. Final.
	StateDuplicate State = "duplicate"
	// StateHeld: stopped with a reason (Work.LastError) that needs an operator
	// or a configuration change, e.g. no mapping for this document type. Not
	// claimed by workers; resumes at any pipeline state, or is rejected or
	// declared dead.
	StateHeld State = "held"
	// StateRetrying: the stage in Work.RetryOf failed and will be tried again
	// at Work.NextAttemptAt. Entered only through Queue.Retry.
	StateRetrying State = "retrying"
	// StateDead: given up after the last attempt; needs an operator. Final.
	StateDead State = "dead"
)

var pipeline = []State{StateReceived, StateParsed, StateAcked, StateMapped, StateDelivered, StateArchived, StateDone}

var allStates = append(slices.Clone(pipeline), StateRejected, StateDuplicate, StateHeld, StateRetrying, StateDead)

// States lists every state, pipeline first.
func States() []State { return slices.Clone(allStates) }

// Valid reports whether s is one of the defined states.
func (s State) Valid() bool { return slices.Contains(allStates, s) }

// Final reports whether s is left only by a replay: done, duplicate, dead.
func (s State) Final() bool {
	return s == StateDone || s == StateDuplicate || s == StateDead
}

// openStatesSQL is the SQL list of the states that are not final, quoted:
// only items in them can hold a lease, and "state IN (...)" lets a query
// use the (state, next_attempt_at) indexes instead of reading every row.
var openStatesSQL = func() string {
	var q []string
	for _, st := range allStates {
		if !st.Final() {
			q = append(q, "'"+string(st)+"'")
		}
	}
	return strings.Join(q, ", ")
}()

// InPipeline reports whether s is one of received … done.
func (s State) InPipeline() bool { return s.rank() >= 0 }

func (s State) rank() int { return slices.Index(pipeline, s) }

// CanTransition reports whether Transition may move an item from one state to
// another. For an item that is retrying, from is the stage being retried
// (Work.RetryOf). The edges:
//
//   - a pipeline state other than done → any later pipeline state (stages may
//     be skipped: a CSV file has no ack), or → rejected, duplicate, held, dead;
//   - rejected → archived, done, dead (a rejected item is still archived);
//   - held → any pipeline state (resume), rejected, dead;
//   - done, duplicate, dead → nothing (use Replay);
//   - nothing → retrying (use Retry).
func CanTransition(from, to State) bool {
	if from == to || !from.Valid() || !to.Valid() || to == StateRetrying || from.Final() {
		return false
	}
	switch from {
	case StateRejected:
		return to == StateArchived || to == StateDone || to == StateDead
	case StateHeld:
		return to.InPipeline() || to == StateRejected || to == StateDead
	case StateRetrying:
		return false // validated against the retried stage instead
	}
	// from is a pipeline state other than done.
	if to.InPipeline() {
		return to.rank() > from.rank()
	}
	return true // rejected, duplicate, held, dead
}

// CanRetry reports whether Retry may be called on an item in state s: any
// state that is not final and not held (a held item waits for a person, not a
// timer).
func CanRetry(s State) bool {
	return s.Valid() && !s.Final() && s != StateHeld
}

// CanReplayTo reports whether Replay may send an item to state s: any
// pipeline state before done.
func CanReplayTo(s State) bool { return s.InPipeline() && s != StateDone }

func checkState(s State) error {
	if !s.Valid() {
		return fmt.Errorf("%w: unknown state %q", ErrInvalid, s)
	}
	return nil
}
