package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/edigw/edigw/gateway/api"
	"github.com/edigw/edigw/gateway/ops"
	"github.com/edigw/edigw/gateway/web"
	"github.com/edigw/edigw/gateway/webhooks"
	"github.com/edigw/edigw/partners"
	"github.com/edigw/edigw/spool"
)

// Ops is the operations service over this gateway (API, console, CLI).
func (g *Gateway) Ops() *ops.Service {
	s := &ops.Service{Store: g.store, Blobs: g.blobs, Partners: g.partners}
	if g.sched != nil {
		s.RunPoll = g.sched.RunNow
	}
	if g.outbox != nil {
		s.SendPO = g.SendPurchaseOrder
	}
	return s
}

// tokens reads the configured API tokens, or, with none configured, the
// generated admin token (<data>/admin.token, created on first start).
func (g *Gateway) tokens() ([]api.Token, error) {
	var out []api.Token
	for i, t := range g.cfg.HTTP.Tokens {
		where := fmt.Sprintf("http.tokens[%d]", i)
		role, err := ops.ParseRole(t.Role)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if t.Name == "" {
			return nil, fmt.Errorf("%s: name is required", where)
		}
		ref := partners.SecretRef{Env: t.TokenEnv, File: t.TokenFile, Field: where}
		if ref.IsZero() {
			return nil, fmt.Errorf("%s (%s): token_env or token_file is required", where, t.Name)
		}
		secret, err := ref.Resolve("")
		if err != nil {
			return nil, err
		}
		if len(secret) < 16 {
			return nil, fmt.Errorf("%s (%s): the token is shorter than 16 characters", where, t.Name)
		}
		out = append(out, api.Token{Name: t.Name, Role: role, Secret: secret})
	}
	if len(out) > 0 {
		return out, nil
	}
	path := filepath.Join(g.cfg.DataDir, "admin.token")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		raw := make([]byte, 24)
		rand.Read(raw)
		b = []byte(hex.EncodeToString(raw) + "\n")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return nil, err
		}
		g.log.Info("no API tokens configured: generated an admin token", "file", path)
	} else if err != nil {
		return nil, err
	}
	return []api.Token{{Name: "admin", Role: ops.Admin, Secret: strings.TrimSpace(string(b))}}, nil
}

// httpHandler serves the API, the console, /metrics and the health checks
// on one listener.
func (g *Gateway) httpHandler() (http.Handler, error) {
	ts, err := g.tokens()
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	ready := func(ctx context.Context) error {
		_, err := g.store.ListRuns(ctx, spool.RunFilter{Limit: 1})
		return err
	}
	tokens := api.NewTokens(ts)
	api.New(g.Ops(), tokens, ready, g.log).Register(mux)
	web.New(g.Ops(), tokens, g.log).Register(mux)
	mux.Handle("GET /metrics", g.metrics.Handler())
	return mux, nil
}

// webhooks builds the dispatcher of the configured webhooks.
func (g *Gateway) webhooks() (*webhooks.Dispatcher, error) {
	var eps []webhooks.Endpoint
	known := []string{webhooks.FileReceived, webhooks.DocumentDelivered, webhooks.DocumentFailed, webhooks.AckReceived, webhooks.AckOverdue}
	for i, w := range g.cfg.Webhooks {
		where := fmt.Sprintf("webhooks[%d]", i)
		if w.Name == "" || w.URL == "" {
			return nil, fmt.Errorf("%s: name and url are required", where)
		}
		secret, err := partners.SecretRef{Env: w.SecretEnv, File: w.SecretFile, Field: where}.Resolve("")
		if err != nil || secret == "" {
			return nil, fmt.Errorf("%s (%s): a secret is required (secret_env or secret_file): %v", where, w.Name, err)
		}
		for _, ev := range w.Events {
			if !slices.Contains(known, ev) {
				return nil, fmt.Errorf("%s (%s): event %q is not one of %s", where, w.Name, ev, strings.Join(known, ", "))
			}
		}
		eps = append(eps, webhooks.Endpoint{Name: w.Name, URL: w.URL, Secret: secret, Events: w.Events})
	}
	d := webhooks.New(eps, "edigw/"+g.id, g.log)
	d.OnResult = func(event, outcome string) { g.metrics.Webhooks.WithLabelValues(event, outcome).Inc() }
	return d, nil
}
