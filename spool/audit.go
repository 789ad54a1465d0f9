package spool

import (
	"context"
	"encoding/json"
	"time"
)

// Audit is the append-only log of what people (and API clients) did: every
// action through the API, the console or the CLI, with who, in which role
// and why, whether it was allowed and how it ended.
type Audit interface {
	// AddAudit appends an entry (At = now) and returns it with its ID.
	AddAudit(ctx context.Context, e AuditEntry) (AuditEntry, error)
	// ListAudit returns entries newest first.
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditEntry, error)
}

// AuditEntry is one action.
type AuditEntry struct {
	ID      int64
	At      time.Time
	Actor   string // token name or user
	Role    string // viewer, operator, admin
	Action  string // e.g. "replay", "retry", "resolve", "run-poll", "send-po"
	Target  string // the message id, partner/poll, ...
	Reason  string // the why the actor gave
	Outcome string // "ok", "denied" or the error
	Detail  json.RawMessage
}

// AuditFilter selects audit entries; zero fields match everything.
type AuditFilter struct {
	Actor  string
	Target string
	Limit  int // default 100, at most 1000
}
