// Package erpsink is a built-in test ERP: it accepts the documents edigw
// delivers, records each once per Idempotency-Key, and lets tests inject
// faults. It backs the `make run` demo, end-to-end tests and benchmarks.
//
// HTTP API:
//
//	POST   /{endpoint}          accept a JSON document (Idempotency-Key required)
//	                            201 first time; 200 + "Idempotent-Replayed: true" for a replay
//	GET    /_sink/documents     JSON list; filters ?endpoint= and ?type= (X-Edigw-Document-Type)
//	GET    /_sink/stats         counts per endpoint: posts, unique, replays, faulted, rejected
//	GET    /_sink/faults        the faults in force
//	POST   /_sink/faults        add a Fault (JSON); DELETE clears them all
//	GET    /_sink/health        "ok"
//
// The first POST of a key wins; later ones with the same key (on any
// endpoint, whatever their body) are answered as replays and not stored.
// With a directory, each document is one JSON file written atomically
// (temp file, fsync, rename, fsync dir) before the POST is answered, and a
// new Sink on the same directory loads them back.
package erpsink

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Header names, as the erp client uses them.
const (
	HeaderIdempotencyKey   = "Idempotency-Key"
	HeaderCorrelationID    = "X-Correlation-ID"
	HeaderDocumentType     = "X-Edigw-Document-Type"
	HeaderIdempotentReplay = "Idempotent-Replayed"

	maxBody = 32 << 20
)

// Document is one stored delivery.
type Document struct {
	Key           string          `json:"key"`
	CorrelationID string          `json:"correlation_id,omitempty"`
	Endpoint      string          `json:"endpoint"`
	DocumentType  string          `json:"document_type,omitempty"`
	ReceivedAt    time.Time       `json:"received_at"`
	Body          json.RawMessage `json:"body"` // as posted, less surrounding whitespace
}

// Fault makes the sink answer Status instead of accepting a POST.
type Fault struct {
	Endpoint   string `json:"endpoint,omitempty"`   // "" = every endpoint
	Match      string `json:"match,omitempty"`      // only bodies containing this string
	Status     int    `json:"status,omitempty"`     // 0 = no status (delay only)
	Count      int    `json:"count,omitempty"`      // next N matching posts; 0 = until cleared
	RetryAfter int    `json:"retryAfter,omitempty"` // seconds, sent as Retry-After
	DelayMs    int    `json:"delayMs,omitempty"`    // wait before answering (timeouts)
}

// EndpointStats counts what one endpoint received since the sink started
// (Unique also counts documents loaded from the directory).
type EndpointStats struct {
	Posts    int `json:"posts"`    // every POST
	Unique   int `json:"unique"`   // documents stored
	Replays  int `json:"replays"`  // POSTs of a key already stored
	Faulted  int `json:"faulted"`  // POSTs answered by a fault
	Rejected int `json:"rejected"` // POSTs refused as malformed (no key, bad JSON)
}

// Option configures a Sink.
type Option func(*Sink)

// WithLogger logs each POST at info level.
func WithLogger(l *slog.Logger) Option { return func(s *Sink) { s.log = l } }

// Sink is the test ERP. It is an http.Handler and safe for concurrent use.
type Sink struct {
	dir string
	log *slog.Logger
	mux *http.ServeMux

	mu      sync.Mutex
	entries map[string]*entry // by idempotency key
	counts  map[string]int    // accepted POSTs by key (first + replays)
	stats   map[string]*EndpointStats
	faults  []*Fault
}

type entry struct {
	doc   Document
	ready chan struct{} // closed once the document is durable (or failed)
	err   error
}

// NewSink builds a sink. With dir != "" documents are persisted there (the
// directory is created) and the ones already there are loaded; with dir ==
// "" they live in memory only.
func NewSink(dir string, opts ...Option) (*Sink, error) {
	s := &Sink{
		dir:     dir,
		log:     slog.New(slog.DiscardHandler),
		entries: map[string]*entry{},
		counts:  map[string]int{},
		stats:   map[string]*EndpointStats{},
	}
	for _, o := range opts {
		o(s)
	}
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("erpsink: %w", err)
		}
		if err := s.load(); err != nil {
			return nil, err
		}
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("POST /{endpoint}", s.handlePost)
	s.mux.HandleFunc("GET /_sink/documents", s.handleDocuments)
	s.mux.HandleFunc("GET /_sink/stats", s.handleStats)
	s.mux.HandleFunc("GET /_sink/faults", s.handleGetFaults)
	s.mux.HandleFunc("POST /_sink/faults", s.handleAddFault)
	s.mux.HandleFunc("DELETE /_sink/faults", s.handleClearFaults)
	s.mux.HandleFunc("GET /_sink/health", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	return s, nil
}

func (s *Sink) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *Sink) load() error {
	names, err := filepath.Glob(filepath.Join(s.dir, "*.json"))
	if err != nil {
		return fmt.Errorf("erpsink: %w", err)
	}
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			return fmt.Errorf("erpsink: %w", err)
		}
		var d Document
		if err := json.Unmarshal(b, &d); err != nil || d.Key == "" {
			return fmt.Errorf("erpsink: %s: not a stored document: %v", name, err)
		}
		ready := make(chan struct{})
		close(ready)
		s.entries[d.Key] = &entry{doc: d, ready: ready}
		s.stat(d.Endpoint).Unique++
	}
	return nil
}

// stat returns the counters of an endpoint; s.mu must be held.
func (s *Sink) stat(endpoint string) *EndpointStats {
	st := s.stats[endpoint]
	if st == nil {
		st = &EndpointStats{}
		s.stats[endpoint] = st
	}
	return st
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func (s *Sink) handlePost(w http.ResponseWriter, r *http.Request) {
	endpoint := r.PathValue("endpoint")
	if strings.HasPrefix(endpoint, "_") {
		writeError(w, http.StatusNotFound, "no such endpoint")
		return
	}
	body, err := readBody(w, r)
	s.mu.Lock()
	st := s.stat(endpoint)
	st.Posts++
	if err != nil {
		st.Rejected++
		s.mu.Unlock()
		status := http.StatusBadRequest
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			status = http.StatusRequestEntityTooLarge
		}
		writeError(w, status, err.Error())
		return
	}
	f := s.takeFault(endpoint, body)
	if f != nil {
		st.Faulted++
	}
	s.mu.Unlock()

	if f != nil {
		if f.DelayMs > 0 {
			select {
			case <-time.After(time.Duration(f.DelayMs) * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
		if f.Status != 0 {
			if f.RetryAfter > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(f.RetryAfter))
			}
			s.log.Info("erp sink: fault injected", "endpoint", endpoint, "status", f.Status,
				"correlation_id", r.Header.Get(HeaderCorrelationID))
			writeError(w, f.Status, "injected fault")
			return
		}
	}

	key := r.Header.Get(HeaderIdempotencyKey)
	if key == "" || !json.Valid(body) {
		s.mu.Lock()
		st.Rejected++
		s.mu.Unlock()
		msg := "missing Idempotency-Key header"
		if key != "" {
			msg = "body is not valid JSON"
		}
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	doc := Document{
		Key:           key,
		CorrelationID: r.Header.Get(HeaderCorrelationID),
		Endpoint:      endpoint,
		DocumentType:  r.Header.Get(HeaderDocumentType),
		ReceivedAt:    time.Now().UTC(),
		Body:          json.RawMessage(bytes.TrimSpace(body)),
	}
	stored, replay, err := s.record(r.Context(), doc)
	switch {
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
	case replay:
		s.log.Info("erp sink: replay", "endpoint", endpoint, "key", key, "correlation_id", doc.CorrelationID)
		w.Header().Set(HeaderIdempotentReplay, "true")
		writeJSON(w, http.StatusOK, map[string]any{"status": "replayed", "key": key, "received_at": stored.ReceivedAt})
	default:
		s.log.Info("erp sink: accepted", "endpoint", endpoint, "key", key, "type", doc.DocumentType,
			"correlation_id", doc.CorrelationID)
		writeJSON(w, http.StatusCreated, map[string]any{"status": "accepted", "key": key, "received_at": stored.ReceivedAt})
	}
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("reading body: %w", err)
	}
	return b, nil
}

// record stores doc unless its key is known. Concurrent POSTs of one key
// wait for the first to be durable; only the first is stored. A failed
// write forgets the key, so a later POST may store it.
func (s *Sink) record(ctx context.Context, doc Document) (Document, bool, error) {
	for {
		s.mu.Lock()
		e, ok := s.entries[doc.Key]
		if !ok {
			e = &entry{doc: doc, ready: make(chan struct{})}
			s.entries[doc.Key] = e
			s.mu.Unlock()
			err := s.persist(doc)
			s.mu.Lock()
			if err != nil {
				delete(s.entries, doc.Key)
				e.err = err
			} else {
				s.counts[doc.Key]++
				s.stat(doc.Endpoint).Unique++
			}
			close(e.ready)
			s.mu.Unlock()
			return doc, false, err
		}
		s.mu.Unlock()
		select {
		case <-e.ready:
		case <-ctx.Done():
			return Document{}, false, ctx.Err()
		}
		if e.err != nil {
			continue // the first writer failed; try to be the writer
		}
		s.mu.Lock()
		s.counts[doc.Key]++
		s.stat(doc.Endpoint).Replays++
		s.mu.Unlock()
		return e.doc, true, nil
	}
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// fileName is readable and collision-free: a sanitised prefix of the key
// and a hash of the whole key.
func fileName(key string) string {
	sum := sha256.Sum256([]byte(key))
	p := strings.Trim(unsafeChars.ReplaceAllString(key, "_"), "._")
	if len(p) > 80 {
		p = p[:80]
	}
	return p + "-" + hex.EncodeToString(sum[:8]) + ".json"
}

func (s *Sink) persist(doc Document) error {
	if s.dir == "" {
		return nil
	}
	// The body is written verbatim (json.Marshal would compact it), so a
	// reloaded document has the exact bytes that were POSTed.
	body := doc.Body
	doc.Body = nil
	meta, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("erpsink: %w", err)
	}
	meta, ok := bytes.CutSuffix(meta, []byte(`,"body":null}`))
	if !ok {
		return fmt.Errorf("erpsink: storing %s: unexpected document encoding", doc.Key)
	}
	b := slices.Concat(meta, []byte(`,"body":`), body, []byte("}"))
	if err := writeFileAtomic(s.dir, fileName(doc.Key), b); err != nil {
		return fmt.Errorf("erpsink: storing %s: %w", doc.Key, err)
	}
	return nil
}

func writeFileAtomic(dir, name string, b []byte) (err error) {
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(append(b, '\n')); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// takeFault returns the first fault that applies and uses up one of its
// count; s.mu must be held.
func (s *Sink) takeFault(endpoint string, body []byte) *Fault {
	for i, f := range s.faults {
		if f.Endpoint != "" && f.Endpoint != endpoint {
			continue
		}
		if f.Match != "" && !strings.Contains(string(body), f.Match) {
			continue
		}
		c := *f
		if f.Count > 0 {
			f.Count--
			if f.Count == 0 {
				s.faults = slices.Delete(s.faults, i, i+1)
			}
		}
		return &c
	}
	return nil
}

// SetFault adds a fault; faults are tried in the order they were added.
func (s *Sink) SetFault(f Fault) error {
	if f.Status != 0 && (f.Status < 200 || f.Status > 599) {
		return fmt.Errorf("erpsink: fault status %d: want 200..599", f.Status)
	}
	if f.Status == 0 && f.DelayMs <= 0 {
		return errors.New("erpsink: a fault needs a status or a delay")
	}
	if f.Count < 0 || f.RetryAfter < 0 || f.DelayMs < 0 {
		return errors.New("erpsink: fault count, retryAfter and delayMs must not be negative")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
	return nil
}

// ClearFaults removes every fault.
func (s *Sink) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// Faults returns the faults in force (with their remaining counts).
func (s *Sink) Faults() []Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Fault, len(s.faults))
	for i, f := range s.faults {
		out[i] = *f
	}
	return out
}

// Documents returns the stored documents, oldest first.
func (s *Sink) Documents() []Document {
	return s.documents("", "")
}

func (s *Sink) documents(endpoint, docType string) []Document {
	s.mu.Lock()
	out := make([]Document, 0, len(s.entries))
	for _, e := range s.entries {
		select {
		case <-e.ready:
		default:
			continue // not durable yet
		}
		if (endpoint == "" || e.doc.Endpoint == endpoint) && (docType == "" || e.doc.DocumentType == docType) {
			out = append(out, e.doc)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Document) int {
		if c := a.ReceivedAt.Compare(b.ReceivedAt); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	return out
}

// Document returns the stored document of a key.
func (s *Sink) Document(key string) (Document, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[key]
	if !ok {
		return Document{}, false
	}
	select {
	case <-e.ready:
		return e.doc, e.err == nil
	default:
		return Document{}, false
	}
}

// Count returns how many POSTs of key this sink accepted since it started:
// the first one plus replays (faulted and rejected POSTs are not counted).
// Exactly-once delivery shows as Count(key) == 1.
func (s *Sink) Count(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[key]
}

// Stats returns the counters per endpoint.
func (s *Sink) Stats() map[string]EndpointStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]EndpointStats, len(s.stats))
	for k, v := range s.stats {
		out[k] = *v
	}
	return out
}

func (s *Sink) handleDocuments(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	writeJSON(w, http.StatusOK, s.documents(q.Get("endpoint"), q.Get("type")))
}

func (s *Sink) handleStats(w http.ResponseWriter, _ *http.Request) {
	per := s.Stats()
	var total EndpointStats
	for _, st := range per {
		total.Posts += st.Posts
		total.Unique += st.Unique
		total.Replays += st.Replays
		total.Faulted += st.Faulted
		total.Rejected += st.Rejected
	}
	writeJSON(w, http.StatusOK, map[string]any{"endpoints": per, "total": total})
}

func (s *Sink) handleGetFaults(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Faults())
}

func (s *Sink) handleAddFault(w http.ResponseWriter, r *http.Request) {
	var f Fault
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		writeError(w, http.StatusBadRequest, "fault: "+err.Error())
		return
	}
	if err := s.SetFault(f); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, f)
}

func (s *Sink) handleClearFaults(w http.ResponseWriter, _ *http.Request) {
	s.ClearFaults()
	w.WriteHeader(http.StatusNoContent)
}

// Run serves a sink on addr until ctx is done, then shuts down gracefully.
// dir as for NewSink; logger may be nil (slog.Default).
func Run(ctx context.Context, addr, dir string, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.Default()
	}
	s, err := NewSink(dir, WithLogger(logger))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("erpsink: %w", err)
	}
	return serve(ctx, ln, s, dir, logger)
}

func serve(ctx context.Context, ln net.Listener, s *Sink, dir string, logger *slog.Logger) error {
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	logger.Info("erp sink listening", "addr", ln.Addr().String(), "dir", dir, "documents", len(s.Documents()))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("erpsink: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("erpsink: shutdown: %w", err)
	}
	logger.Info("erp sink stopped")
	return nil
}
