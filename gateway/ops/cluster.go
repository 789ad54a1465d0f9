package ops

import (
	"context"
	"time"

	"github.com/edigw/edigw/spool"
)

// NodeAlive is how recent a node's heartbeat must be to count as alive
// (nodes beat every 5s).
const NodeAlive = 20 * time.Second

// NodeView is a gateway node with the polls it is running now.
type NodeView struct {
	spool.Node
	Alive bool
	Polls []spool.PollRun // runs in progress on this node
}

// Cluster lists the nodes seen in the last hour, alive ones first.
func (s *Service) Cluster(ctx context.Context) ([]NodeView, error) {
	now := time.Now()
	nodes, err := s.Store.ListNodes(ctx, now.Add(-time.Hour))
	if err != nil {
		return nil, err
	}
	runs, err := s.Store.ListRuns(ctx, spool.RunFilter{Limit: 500})
	if err != nil {
		return nil, err
	}
	out := make([]NodeView, 0, len(nodes))
	for _, n := range nodes {
		v := NodeView{Node: n, Alive: now.Sub(n.SeenAt) < NodeAlive}
		for _, r := range runs {
			if r.Status == spool.RunRunning && r.Owner == n.ID && r.LeaseUntil.After(now) {
				v.Polls = append(v.Polls, r)
			}
		}
		out = append(out, v)
	}
	alive := out[:0:0]
	var dead []NodeView
	for _, v := range out {
		if v.Alive {
			alive = append(alive, v)
		} else {
			dead = append(dead, v)
		}
	}
	return append(alive, dead...), nil
}
