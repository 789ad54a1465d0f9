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
	// ExpireSilentLeases ends now the leases that nodes last seen before
	// silentBefore hold on files and documents, so that any node's next
	// claim takes that work over (recording a reclaim) instead of waiting
	// for each lease to run out. A restarted gateway gets a new node ID
	// (host:pid and a random suffix), so without this the work its
	// predecessor held waited out the whole lease (2 minutes by default).
	// Leases of owners that are not nodes (the command line) are left
	// alone. It returns how many leases it ended.
	ExpireSilentLeases(ctx context.Context, silentBefore time.Time) (int, error)
}

// Node is one gateway process.
type Node struct {
	ID        string // host:pid-xxxx (random per start), as in leases
	Addr      string // its HTTP address, as configured
	Version   string
	StartedAt time.Time
	SeenAt    time.Time
	// InFlight counts the items (files and documents) it holds leases on.
	InFlight int
}
