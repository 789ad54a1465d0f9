// Package ops is what operators can see and do, shared by the HTTP API, the
// web console and the CLI: message queries and details (with the raw EDI
// split into segments and the validator's findings placed on them), and the
// actions — replay, retry, resolve, run a poll, send a purchase order — each
// checked against the caller's role and written to the audit log, allowed or
// not.
package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/edigw/edigw/partners"
	"github.com/edigw/edigw/spool"
)

// Role is what a caller may do. Each role includes the ones before it.
type Role int

const (
	Viewer   Role = iota + 1 // read everything
	Operator                 // replay, retry, resolve, run polls, send purchase orders
	Admin                    // everything, including the audit log
)

// ParseRole reads "viewer", "operator" or "admin".
func ParseRole(s string) (Role, error) {
	switch s {
	case "viewer":
		return Viewer, nil
	case "operator":
		return Operator, nil
	case "admin":
		return Admin, nil
	}
	return 0, fmt.Errorf("role %q is not one of viewer, operator, admin", s)
}

func (r Role) String() string {
	switch r {
	case Viewer:
		return "viewer"
	case Operator:
		return "operator"
	case Admin:
		return "admin"
	}
	return "none"
}

// Actor is who calls: a token's name and role.
type Actor struct {
	Name string
	Role Role
}

// ErrForbidden: the actor's role does not allow the action.
var ErrForbidden = errors.New("forbidden")

// ErrInvalid: the request is malformed (a bad state, a missing comment).
var ErrInvalid = errors.New("invalid request")

// Service holds what the operations need. Hooks that are nil make their
// action fail with a clear error (e.g. polls disabled on this node).
type Service struct {
	Store    spool.Store
	Blobs    spool.Blobs
	Partners func() *partners.Set
	// RunPoll runs a poll now and waits for it.
	RunPoll func(ctx context.Context, partner, poll, who string) (spool.PollRun, error)
	// SendPO maps a canonical purchase order to an 850 for the partner and
	// queues it for delivery.
	SendPO func(ctx context.Context, partner string, po json.RawMessage, who string) (spool.File, error)
}

// act checks the role, runs fn and records the attempt in the audit log.
func (s *Service) act(ctx context.Context, a Actor, need Role, action, target, reason string, detail any, fn func() error) error {
	e := spool.AuditEntry{Actor: a.Name, Role: a.Role.String(), Action: action, Target: target, Reason: reason}
	if detail != nil {
		e.Detail, _ = json.Marshal(detail)
	}
	var err error
	if a.Role < need {
		err = fmt.Errorf("%w: %s needs the %s role, %s has %s", ErrForbidden, action, need, a.Name, a.Role)
		e.Outcome = "denied"
	} else {
		err = fn()
		e.Outcome = "ok"
		if err != nil {
			e.Outcome = err.Error()
		}
	}
	if _, aerr := s.Store.AddAudit(context.WithoutCancel(ctx), e); aerr != nil {
		return errors.Join(err, fmt.Errorf("audit log: %w", aerr))
	}
	return err
}

// work returns the progress of a file or document.
func (s *Service) work(ctx context.Context, id spool.ID) (spool.Work, error) {
	switch id.Kind() {
	case spool.KindFile:
		f, err := s.Store.GetFile(ctx, id)
		return f.Work, err
	case spool.KindDocument:
		d, err := s.Store.GetDocument(ctx, id)
		return d.Work, err
	}
	return spool.Work{}, fmt.Errorf("%w: %q is not a file or document id", ErrInvalid, id)
}

// Replay runs a message again from a pipeline state.
func (s *Service) Replay(ctx context.Context, a Actor, id spool.ID, to spool.State, reason string) error {
	return s.act(ctx, a, Operator, "replay", string(id), reason, map[string]string{"to": string(to)}, func() error {
		if !spool.CanReplayTo(to) {
			return fmt.Errorf("%w: %q is not a state to replay to", ErrInvalid, to)
		}
		if _, err := s.work(ctx, id); err != nil {
			return err
		}
		return s.Store.Replay(ctx, id, to, spool.WithActor(a.Name), spool.WithReason(reason))
	})
}

// Retry makes a retrying message's current stage due now. It reports what
// it did: a message that finished meanwhile has nothing to retry.
func (s *Service) Retry(ctx context.Context, a Actor, id spool.ID, reason string) (string, error) {
	var msg string
	err := s.act(ctx, a, Operator, "retry", string(id), reason, nil, func() error {
		w, err := s.work(ctx, id)
		if err != nil {
			return err
		}
		stage := w.Stage()
		switch {
		case w.State == spool.StateDone || w.State == spool.StateDuplicate:
			msg = fmt.Sprintf("%s is %s: nothing to retry", id, w.State)
			return nil
		case w.State == spool.StateHeld || w.State == spool.StateDead || !spool.CanReplayTo(stage):
			return fmt.Errorf("%w: %s is %s: replay it from a state instead", ErrInvalid, id, w.State)
		}
		msg = fmt.Sprintf("%s due now at %s", id, stage)
		return s.Store.Replay(ctx, id, stage, spool.WithActor(a.Name), spool.WithReason(cmpOr(reason, "retry now")))
	})
	return msg, err
}

// Resolve closes a held or dead message by hand with what was done: the
// comment is logged and a held message becomes dead (it will not run again
// unless replayed).
func (s *Service) Resolve(ctx context.Context, a Actor, id spool.ID, comment string) error {
	return s.act(ctx, a, Operator, "resolve", string(id), comment, nil, func() error {
		if comment == "" {
			return fmt.Errorf("%w: a comment saying what was done is required", ErrInvalid)
		}
		w, err := s.work(ctx, id)
		if err != nil {
			return err
		}
		if err := s.Store.AddEvent(ctx, spool.Event{Subject: id, Kind: spool.EventNote, Actor: a.Name, Message: "resolved: " + comment}); err != nil {
			return err
		}
		if w.State == spool.StateHeld {
			return s.Store.Transition(ctx, id, spool.StateHeld, spool.StateDead, spool.WithActor(a.Name), spool.WithReason("resolved by hand: "+comment))
		}
		return nil
	})
}

// RunPollNow runs a poll and waits for its record.
func (s *Service) RunPollNow(ctx context.Context, a Actor, partner, poll string) (spool.PollRun, error) {
	var run spool.PollRun
	err := s.act(ctx, a, Operator, "run-poll", partner+"/"+poll, "", nil, func() error {
		if s.RunPoll == nil {
			return errors.New("polls do not run on this node (schedules.enabled is false)")
		}
		var err error
		run, err = s.RunPoll(ctx, partner, poll, a.Name)
		if err != nil && run.ID != 0 {
			return nil // the run happened and its record says how it went
		}
		return err
	})
	return run, err
}

// SendPurchaseOrder queues a canonical purchase order for the partner as
// an 850.
func (s *Service) SendPurchaseOrder(ctx context.Context, a Actor, partner string, po json.RawMessage) (spool.File, error) {
	var f spool.File
	err := s.act(ctx, a, Operator, "send-po", partner, "", nil, func() error {
		if s.SendPO == nil {
			return errors.New("outbound purchase orders are not available on this node")
		}
		var err error
		f, err = s.SendPO(ctx, partner, po, a.Name)
		return err
	})
	return f, err
}

// Audit lists the audit log (admins only; reading it is not itself logged).
func (s *Service) Audit(ctx context.Context, a Actor, f spool.AuditFilter) ([]spool.AuditEntry, error) {
	if a.Role < Admin {
		return nil, fmt.Errorf("%w: the audit log needs the admin role", ErrForbidden)
	}
	return s.Store.ListAudit(ctx, f)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
