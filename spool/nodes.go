package spool

import (
	"context"
	"time"
)

// Nodes is the cluster's membership: every gateway node heartbeats into the
// shared store, so any node's console shows all of them.
type Nodes interface {
	// Heartbeat inserts or refreshes n (SeenAt = now; StartedAt is kept
	// from the first heartbeat of the same ID).
	Heartbeat(ctx context.Context, n Node) error
	// ListNodes returns the nodes seen since the given time, by ID.
	ListNodes(ctx context.Context, since time.Time) ([]Node, error)
}

// Node is one gateway process.
type Node struct {
	ID        string // host:pid, as in leases
	Addr      string // its HTTP address, as configured
	Version   string
	StartedAt time.Time
	SeenAt    time.Time
	// InFlight counts the items (files and documents) it holds leases on.
	InFlight int
}
