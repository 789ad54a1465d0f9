// Package api is the gateway's HTTP JSON API (/api/v1, described in
// docs/openapi.yaml) with /healthz and /readyz. Every request is
// authenticated with an API token (Bearer, or basic auth with the token's
// name and secret); each token has a role; every action goes to the audit
// log through gateway/ops.
package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/edigw/edigw/gateway/ops"
	"github.com/edigw/edigw/schedules"
	"github.com/edigw/edigw/spool"
)

// Token is an API credential.
type Token struct {
	Name   string
	Role   ops.Role
	Secret string
}

// Tokens checks presented secrets in constant time.
type Tokens struct {
	list []tokenHash
}

type tokenHash struct {
	name string
	role ops.Role
	sum  [32]byte
}

// NewTokens prepares the configured tokens.
func NewTokens(ts []Token) *Tokens {
	t := &Tokens{}
	for _, x := range ts {
		t.list = append(t.list, tokenHash{name: x.Name, role: x.Role, sum: sha256.Sum256([]byte(x.Secret))})
	}
	return t
}

// Check returns the actor a secret (and, for basic auth, a name) belongs to.
func (t *Tokens) Check(name, secret string) (ops.Actor, bool) {
	sum := sha256.Sum256([]byte(secret))
	var found ops.Actor
	ok := false
	for _, x := range t.list { // every token is compared: no timing hint of which matched
		if subtle.ConstantTimeCompare(sum[:], x.sum[:]) == 1 && (name == "" || name == x.name) {
			found, ok = ops.Actor{Name: x.name, Role: x.role}, true
		}
	}
	return found, ok
}

// Authenticate reads the request's credentials: "Authorization: Bearer
// SECRET" or basic auth (token name and secret).
func (t *Tokens) Authenticate(r *http.Request) (ops.Actor, bool) {
	if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
		return t.Check("", strings.TrimPrefix(h, "Bearer "))
	}
	if name, secret, ok := r.BasicAuth(); ok {
		return t.Check(name, secret)
	}
	return ops.Actor{}, false
}

// Server serves the API.
type Server struct {
	ops    *ops.Service
	tokens *Tokens
	log    *slog.Logger
	ready  func(context.Context) error
}

// New returns the API handler: /api/v1/..., /healthz and /readyz. ready
// says whether the node can take work (the spool answers).
func New(svc *ops.Service, tokens *Tokens, ready func(context.Context) error, log *slog.Logger) *Server {
	return &Server{ops: svc, tokens: tokens, log: log, ready: ready}
}

// Register adds the routes to mux.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := s.ready(ctx); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	h := func(pattern string, fn func(w http.ResponseWriter, r *http.Request, a ops.Actor) error) {
		mux.HandleFunc(pattern, s.auth(fn))
	}
	h("GET /api/v1/documents", s.listDocuments)
	h("GET /api/v1/documents/{id}", s.getDocument)
	h("GET /api/v1/documents/{id}/mapped", s.getMapped)
	h("GET /api/v1/files", s.listFiles)
	h("GET /api/v1/files/{id}", s.getFile)
	h("GET /api/v1/files/{id}/raw", s.getRaw)
	h("GET /api/v1/files/{id}/segments", s.getSegments)
	h("GET /api/v1/files/{id}/tree", s.getTree)
	h("POST /api/v1/messages/{id}/replay", s.replay)
	h("POST /api/v1/messages/{id}/retry", s.retry)
	h("POST /api/v1/messages/{id}/resolve", s.resolve)
	h("GET /api/v1/partners", s.listPartners)
	h("GET /api/v1/partners/{id}", s.getPartner)
	h("POST /api/v1/partners/{id}/purchase-orders", s.sendPO)
	h("GET /api/v1/purchase-orders", s.listPOs)
	h("GET /api/v1/schedules", s.listSchedules)
	h("GET /api/v1/schedules/{partner}/{poll}/runs", s.listRuns)
	h("POST /api/v1/schedules/{partner}/{poll}/run", s.runPoll)
	h("GET /api/v1/audit", s.listAudit)
	h("GET /api/v1/nodes", s.listNodes)
}

// apiError is the body of every error response.
type apiError struct {
	Error string `json:"error"`
}

func (s *Server) auth(fn func(w http.ResponseWriter, r *http.Request, a ops.Actor) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a, ok := s.tokens.Authenticate(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="edigw"`)
			writeJSON(w, http.StatusUnauthorized, apiError{"missing or unknown API token"})
			return
		}
		if err := fn(w, r, a); err != nil {
			status := StatusOf(err)
			if status >= 500 {
				s.log.Error("api", "path", r.URL.Path, "actor", a.Name, "err", err)
			}
			writeJSON(w, status, apiError{err.Error()})
		}
	}
}

// StatusOf maps an operation's error to its HTTP status (the console uses
// it too).
func StatusOf(err error) int {
	var ce *spool.ConflictError
	switch {
	case errors.Is(err, ops.ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, spool.ErrNotFound), errors.Is(err, schedules.ErrUnknownPoll):
		return http.StatusNotFound
	case errors.Is(err, ops.ErrInvalid), errors.Is(err, spool.ErrInvalid):
		return http.StatusBadRequest
	case errors.As(err, &ce), errors.Is(err, spool.ErrLeased), errors.Is(err, spool.ErrPollBusy), errors.Is(err, spool.ErrInvalidTransition):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func readJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: body: %v", ops.ErrInvalid, err)
	}
	return nil
}

// query helpers

func timeParam(r *http.Request, name string) (time.Time, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	t, err := time.Parse("2006-01-02", v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %s=%q: want RFC 3339 or YYYY-MM-DD", ops.ErrInvalid, name, v)
	}
	return t, nil
}

func page(r *http.Request) (spool.Page, error) {
	p := spool.Page{After: r.URL.Query().Get("cursor"), Limit: 50}
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return p, fmt.Errorf("%w: limit=%q: want 1-1000", ops.ErrInvalid, v)
		}
		p.Limit = n
	}
	return p, nil
}

func list(r *http.Request, name string) []string {
	v := r.URL.Query().Get(name)
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// states reads a comma-separated list of states from query parameter name.
func states(r *http.Request, name string) []spool.State {
	var out []spool.State
	for _, s := range list(r, name) {
		out = append(out, spool.State(s))
	}
	return out
}

// window reads the since/until date range and the page of a listing.
func window(r *http.Request) (since, until time.Time, p spool.Page, err error) {
	if since, err = timeParam(r, "since"); err != nil {
		return
	}
	if until, err = timeParam(r, "until"); err != nil {
		return
	}
	p, err = page(r)
	return
}
