package erp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func newClient(t *testing.T, eps []Endpoint, opts ...Option) *Client {
	t.Helper()
	c, err := NewClient(eps, opts...)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c
}

func env(m map[string]string) Option {
	return withLookupEnv(func(k string) (string, bool) { v, ok := m[k]; return v, ok })
}

func delivery(key string) Delivery {
	return Delivery{Body: []byte(`{"po":"PO-1"}`), IdempotencyKey: key, CorrelationID: "msg-1", DocumentType: "purchase_order"}
}

func TestHeadersAndBody(t *testing.T) {
	var got *http.Request
	var gotBody []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Clone(context.Background())
		gotBody, _ = io.ReadAll(r.Body)
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"id":"42"}`)
	}))
	defer srv.Close()

	c := newClient(t, []Endpoint{{
		Name: "orders", URL: srv.URL + "/orders",
		Headers: map[string]string{"X-Tenant": "acme", "Idempotency-Key": "must-not-win"},
	}})
	res := c.Deliver(context.Background(), "orders", delivery("k-1"))
	if res.Outcome != Delivered || res.Err != nil || !res.Attempted || res.Status != 201 {
		t.Fatalf("result = %+v", res)
	}
	if string(res.Body) != `{"id":"42"}` || res.Duration <= 0 || res.Header == nil {
		t.Errorf("body %q duration %v header %v", res.Body, res.Duration, res.Header)
	}
	if got.Method != http.MethodPost || got.URL.Path != "/orders" {
		t.Errorf("request %s %s", got.Method, got.URL.Path)
	}
	want := map[string]string{
		"Content-Type":          "application/json",
		"Idempotency-Key":       "k-1",
		"X-Correlation-ID":      "msg-1",
		"X-Edigw-Document-Type": "purchase_order",
		"X-Tenant":              "acme",
	}
	for k, v := range want {
		if g := got.Header.Get(k); g != v {
			t.Errorf("header %s = %q, want %q", k, g, v)
		}
	}
	if ua := got.Header.Get("User-Agent"); !strings.HasPrefix(ua, "edigw/") {
		t.Errorf("User-Agent = %q", ua)
	}
	if got.Header.Get("Authorization") != "" {
		t.Errorf("unexpected Authorization header")
	}
	if string(gotBody) != `{"po":"PO-1"}` {
		t.Errorf("body = %q", gotBody)
	}
}

func authEcho(t *testing.T) (*httptest.Server, *atomic.Value) {
	var last atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		last.Store(r.Header.Get("Authorization"))
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	return srv, &last
}

func TestBearerAuth(t *testing.T) {
	srv, last := authEcho(t)
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("file-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	c := newClient(t, []Endpoint{
		{Name: "env", URL: srv.URL, Auth: Auth{Kind: "bearer", TokenEnv: "ERP_TOKEN"}},
		{Name: "file", URL: srv.URL, Auth: Auth{Kind: "Bearer", TokenFile: file}},
	}, env(map[string]string{"ERP_TOKEN": "env-token"}),
		WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))

	for name, want := range map[string]string{"env": "Bearer env-token", "file": "Bearer file-token"} {
		res := c.Deliver(context.Background(), name, delivery("k"))
		if res.Outcome != Delivered {
			t.Fatalf("%s: %+v", name, res)
		}
		if g := last.Load(); g != want {
			t.Errorf("%s: Authorization = %q, want %q", name, g, want)
		}
	}
	if logs.Len() == 0 || strings.Contains(logs.String(), "env-token") || strings.Contains(logs.String(), "file-token") {
		t.Errorf("logs leak a secret or are empty:\n%s", logs.String())
	}
}

func TestBasicAuth(t *testing.T) {
	srv, last := authEcho(t)
	c := newClient(t, []Endpoint{{Name: "b", URL: srv.URL,
		Auth: Auth{Kind: "basic", Username: "edigw", PasswordEnv: "ERP_PASS"}}},
		env(map[string]string{"ERP_PASS": "s3cret"}))
	res := c.Deliver(context.Background(), "b", delivery("k"))
	if res.Outcome != Delivered {
		t.Fatalf("%+v", res)
	}
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth("edigw", "s3cret")
	if g := last.Load(); g != req.Header.Get("Authorization") {
		t.Errorf("Authorization = %q", g)
	}
}

func TestAuthConfigErrorsNameNoSecret(t *testing.T) {
	file := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(file, []byte("  \n"), 0o600)
	cases := []struct {
		auth Auth
		want string
	}{
		{Auth{Kind: "bearer"}, "environment variable or a file is required"},
		{Auth{Kind: "bearer", TokenEnv: "MISSING"}, "MISSING is not set"},
		{Auth{Kind: "bearer", TokenEnv: "SET", TokenFile: file}, "not both"},
		{Auth{Kind: "bearer", TokenFile: file}, "is empty"},
		{Auth{Kind: "bearer", TokenFile: file + ".nope"}, "no such file"},
		{Auth{Kind: "basic", PasswordEnv: "SET"}, "username is required"},
		{Auth{Kind: "oauth2", ClientID: "x", ClientSecretEnv: "SET"}, "token URL and client ID"},
		{Auth{Kind: "kerberos"}, `unknown kind "kerberos"`},
	}
	for _, tc := range cases {
		_, err := NewClient([]Endpoint{{Name: "e", URL: "http://127.0.0.1:1", Auth: tc.auth}},
			env(map[string]string{"SET": "topsecret"}))
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "topsecret") {
			t.Errorf("%+v: err = %v, want %q", tc.auth, err, tc.want)
		}
	}
}

func TestNewClientValidation(t *testing.T) {
	cases := []struct {
		eps  []Endpoint
		want string
	}{
		{[]Endpoint{{URL: "http://127.0.0.1"}}, "name is required"},
		{[]Endpoint{{Name: "a", URL: "ftp://x"}}, "absolute http or https"},
		{[]Endpoint{{Name: "a", URL: "/relative"}}, "absolute http or https"},
		{[]Endpoint{{Name: "a", URL: "http://x", MaxConcurrency: -1}}, "negative"},
		{[]Endpoint{{Name: "a", URL: "http://x"}, {Name: "a", URL: "http://y"}}, "defined twice"},
	}
	for _, tc := range cases {
		if _, err := NewClient(tc.eps); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want %q", tc.eps, err, tc.want)
		}
	}
}

// fakeTokenServer is an OAuth2 token endpoint for the client-credentials grant.
type fakeTokenServer struct {
	*httptest.Server
	fetches   atomic.Int32
	expiresIn int
}

func newFakeTokenServer(t *testing.T, expiresIn int) *fakeTokenServer {
	f := &fakeTokenServer{expiresIn: expiresIn}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		id, secret, ok := r.BasicAuth()
		if !ok {
			id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
		}
		if r.PostForm.Get("grant_type") != "client_credentials" || id != "edigw" || secret != "cs-secret" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":"invalid_client"}`)
			return
		}
		n := f.fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"access_token": fmt.Sprintf("tok-%d", n),
			"token_type":   "Bearer",
			"expires_in":   f.expiresIn,
			"scope":        r.PostForm.Get("scope"),
		})
	}))
	t.Cleanup(f.Close)
	return f
}

func TestOAuth2ClientCredentials(t *testing.T) {
	tokens := newFakeTokenServer(t, 3600)
	var mu sync.Mutex
	var seen []string
	reject := atomic.Bool{}
	erp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		mu.Unlock()
		if reject.Load() {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer erp.Close()

	secretFile := filepath.Join(t.TempDir(), "cs")
	os.WriteFile(secretFile, []byte("cs-secret\n"), 0o600)
	c := newClient(t, []Endpoint{{Name: "o", URL: erp.URL, Auth: Auth{
		Kind: "oauth2", TokenURL: tokens.URL, ClientID: "edigw", ClientSecretFile: secretFile, Scopes: []string{"erp.write"},
	}}})
	for i := range 3 {
		if res := c.Deliver(context.Background(), "o", delivery(fmt.Sprint(i))); res.Outcome != Delivered {
			t.Fatalf("attempt %d: %+v", i, res)
		}
	}
	if n := tokens.fetches.Load(); n != 1 {
		t.Errorf("token fetched %d times, want 1 (cached)", n)
	}
	// A 401 drops the cached token: Retry, and the next attempt uses a new one.
	reject.Store(true)
	if res := c.Deliver(context.Background(), "o", delivery("x")); res.Outcome != Retry || res.Status != 401 {
		t.Fatalf("401: %+v", res)
	}
	reject.Store(false)
	if res := c.Deliver(context.Background(), "o", delivery("x")); res.Outcome != Delivered {
		t.Fatalf("after 401: %+v", res)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"Bearer tok-1", "Bearer tok-1", "Bearer tok-1", "Bearer tok-1", "Bearer tok-2"}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("Authorization headers = %v, want %v", seen, want)
	}
}

func TestOAuth2Refresh(t *testing.T) {
	// expires_in below oauth2's 10s early-expiry margin: every call refreshes.
	tokens := newFakeTokenServer(t, 1)
	srv, last := authEcho(t)
	c := newClient(t, []Endpoint{{Name: "o", URL: srv.URL, Auth: Auth{
		Kind: "oauth2", TokenURL: tokens.URL, ClientID: "edigw", ClientSecretEnv: "CS",
	}}}, env(map[string]string{"CS": "cs-secret"}))
	c.Deliver(context.Background(), "o", delivery("a"))
	c.Deliver(context.Background(), "o", delivery("b"))
	if n := tokens.fetches.Load(); n != 2 || last.Load() != "Bearer tok-2" {
		t.Errorf("fetches = %d, last = %v; want a refreshed token", n, last.Load())
	}
}

func TestOAuth2TokenFailureIsRetryNotAttempted(t *testing.T) {
	tokens := newFakeTokenServer(t, 3600)
	var hits atomic.Int32
	erp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer erp.Close()
	c := newClient(t, []Endpoint{{Name: "o", URL: erp.URL, Auth: Auth{
		Kind: "oauth2", TokenURL: tokens.URL, ClientID: "edigw", ClientSecretEnv: "CS",
	}}}, env(map[string]string{"CS": "wrong-secret"}))
	res := c.Deliver(context.Background(), "o", delivery("a"))
	if res.Outcome != Retry || res.Attempted || res.Err == nil || hits.Load() != 0 {
		t.Fatalf("%+v (erp hits %d)", res, hits.Load())
	}
	if strings.Contains(res.Err.Error(), "wrong-secret") {
		t.Errorf("error leaks the secret: %v", res.Err)
	}
}

func TestClassification(t *testing.T) {
	// The handler answers the status named by the correlation id.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		spec := r.Header.Get("X-Correlation-ID")
		status, hdr, _ := strings.Cut(spec, ";")
		if hdr != "" {
			k, v, _ := strings.Cut(hdr, "=")
			w.Header().Set(k, v)
		}
		if status == "302" {
			w.Header().Set("Location", "/elsewhere")
		}
		n, _ := strconv.Atoi(status)
		w.WriteHeader(n)
		io.WriteString(w, `{"error":"because"}`)
	}))
	defer srv.Close()
	c := newClient(t, []Endpoint{{Name: "e", URL: srv.URL}})

	cases := []struct {
		spec     string
		want     Outcome
		replayed bool
	}{
		{"200", Delivered, false},
		{"201", Delivered, false},
		{"202", Delivered, false},
		{"204", Delivered, false},
		{"200;Idempotent-Replayed=true", Delivered, true},
		{"409;Idempotent-Replayed=true", Delivered, true},
		{"409", Permanent, false},
		{"408", Retry, false},
		{"425", Retry, false},
		{"429", Retry, false},
		{"500", Retry, false},
		{"502", Retry, false},
		{"503", Retry, false},
		{"504", Retry, false},
		{"507", Retry, false},
		{"400", Permanent, false},
		{"401", Permanent, false},
		{"403", Permanent, false},
		{"404", Permanent, false},
		{"413", Permanent, false},
		{"422", Permanent, false},
		{"302", Permanent, false},
	}
	for _, tc := range cases {
		d := delivery("k")
		d.CorrelationID = tc.spec
		res := c.Deliver(context.Background(), "e", d)
		status, _, _ := strings.Cut(tc.spec, ";")
		if res.Outcome != tc.want || res.Replayed != tc.replayed || strconv.Itoa(res.Status) != status || !res.Attempted {
			t.Errorf("%s: outcome %v replayed %v status %d, want %v %v", tc.spec, res.Outcome, res.Replayed, res.Status, tc.want, tc.replayed)
		}
		if (res.Err == nil) != (tc.want == Delivered) {
			t.Errorf("%s: err = %v", tc.spec, res.Err)
		}
		var se *StatusError
		if res.Err != nil && (!errors.As(res.Err, &se) || !strings.Contains(se.Error(), "because")) {
			t.Errorf("%s: err = %v, want a StatusError with the body", tc.spec, res.Err)
		}
	}
}

func TestUnknownEndpointAndMissingKey(t *testing.T) {
	c := newClient(t, []Endpoint{{Name: "e", URL: "http://127.0.0.1:1"}})
	res := c.Deliver(context.Background(), "nope", delivery("k"))
	if res.Outcome != Permanent || res.Attempted || !errors.Is(res.Err, ErrUnknownEndpoint) || !strings.Contains(res.Err.Error(), `"nope"`) {
		t.Errorf("unknown endpoint: %+v", res)
	}
	res = c.Deliver(context.Background(), "e", delivery(""))
	if res.Outcome != Permanent || res.Attempted || res.Err == nil {
		t.Errorf("missing key: %+v", res)
	}
}

func TestNetworkErrorIsRetry(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	c := newClient(t, []Endpoint{{Name: "e", URL: url}})
	res := c.Deliver(context.Background(), "e", delivery("k"))
	if res.Outcome != Retry || !res.Attempted || res.Err == nil || res.Status != 0 {
		t.Errorf("%+v", res)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", r.Header.Get("X-Correlation-ID"))
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	c := newClient(t, []Endpoint{{Name: "e", URL: srv.URL}}, WithClock(func() time.Time { return now }))
	for v, want := range map[string]time.Duration{
		"120": 2 * time.Minute,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Hour).Format(http.TimeFormat):       0,
		"soon": 0,
	} {
		d := delivery("k")
		d.CorrelationID = v
		if res := c.Deliver(context.Background(), "e", d); res.Outcome != Retry || res.RetryAfter != want {
			t.Errorf("Retry-After %q: %v %v, want %v", v, res.Outcome, res.RetryAfter, want)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                               0,
		"0":                              0,
		" 5 ":                            5 * time.Second,
		"-5":                             0,
		"1.5":                            0,
		"99999999999999999999":           24 * time.Hour,
		"Sun, 01 Mar 2026 12:00:30 GMT":  30 * time.Second,
		"Sunday, 01-Mar-26 12:01:00 GMT": time.Minute,      // RFC 850
		"Sun Mar  1 12:00:10 2026":       10 * time.Second, // ANSI C
		"Tue, 03 Mar 2026 12:00:00 GMT":  24 * time.Hour,   // capped
	} {
		if got := ParseRetryAfter(v, now); got != want {
			t.Errorf("ParseRetryAfter(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestResponseBodyCapped(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.Write(bytes.Repeat([]byte("x"), 2*MaxResponseBody))
	}))
	defer srv.Close()
	c := newClient(t, []Endpoint{{Name: "e", URL: srv.URL}})
	res := c.Deliver(context.Background(), "e", delivery("k"))
	if res.Outcome != Delivered || len(res.Body) != MaxResponseBody {
		t.Errorf("outcome %v, body %d bytes", res.Outcome, len(res.Body))
	}
}

func TestTimeout(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // the server notices a closed connection only after the body
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	defer srv.Close()
	c := newClient(t, []Endpoint{{Name: "e", URL: srv.URL, Timeout: 100 * time.Millisecond}})
	res := c.Deliver(context.Background(), "e", delivery("k"))
	if res.Outcome != Retry || !res.Attempted || !errors.Is(res.Err, context.DeadlineExceeded) || !strings.Contains(res.Err.Error(), "timed out") {
		t.Errorf("%+v", res)
	}
}

func TestConcurrencyBound(t *testing.T) {
	const limit = 3
	var inflight, peak, total atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inflight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		inflight.Add(-1)
		total.Add(1)
	}))
	defer srv.Close()
	c := newClient(t, []Endpoint{{Name: "e", URL: srv.URL, MaxConcurrency: limit}})
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if res := c.Deliver(context.Background(), "e", delivery(fmt.Sprint(i))); res.Outcome != Delivered {
				t.Errorf("%d: %+v", i, res)
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > limit || p < 1 || total.Load() != 20 {
		t.Errorf("peak in flight %d (limit %d), total %d", p, limit, total.Load())
	}
}

// Connections to the ERP are reused up to the endpoint's concurrency: the
// default transport kept 2 idle per host, so with 8 requests in flight most
// POSTs opened a new connection.
func TestConnectionsReusedUpToConcurrency(t *testing.T) {
	const limit = 8
	var opened atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(5 * time.Millisecond)
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			opened.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	c := newClient(t, []Endpoint{{Name: "e", URL: srv.URL, MaxConcurrency: limit}})
	for round := range 5 {
		var wg sync.WaitGroup
		for i := range limit {
			wg.Go(func() {
				if res := c.Deliver(context.Background(), "e", delivery(fmt.Sprint(round, i))); res.Outcome != Delivered {
					t.Errorf("%d/%d: %+v", round, i, res)
				}
			})
		}
		wg.Wait()
	}
	if n := opened.Load(); n > limit {
		t.Errorf("%d connections opened for 5 rounds of %d concurrent POSTs, want at most %d", n, limit, limit)
	}
}

func TestWaitingForSlotRespectsContext(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	}))
	defer srv.Close()
	c := newClient(t, []Endpoint{{Name: "e", URL: srv.URL, MaxConcurrency: 1}})
	done := make(chan Result)
	go func() { done <- c.Deliver(context.Background(), "e", delivery("first")) }()
	<-entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := c.Deliver(ctx, "e", delivery("second"))
	if res.Outcome != Retry || res.Attempted || !errors.Is(res.Err, context.Canceled) {
		t.Errorf("second: %+v", res)
	}
	close(release)
	if res := <-done; res.Outcome != Delivered {
		t.Errorf("first: %+v", res)
	}
}

func TestRateLimit(t *testing.T) {
	const (
		perSecond = 40.0
		burst     = 2
		n         = 16
	)
	var mu sync.Mutex
	var arrivals []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrivals = append(arrivals, time.Now())
		mu.Unlock()
	}))
	defer srv.Close()
	c := newClient(t, []Endpoint{{Name: "e", URL: srv.URL, MaxConcurrency: n, RatePerSecond: perSecond, Burst: burst}})
	start := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { c.Deliver(context.Background(), "e", delivery(fmt.Sprint(i))) })
	}
	wg.Wait()
	mu.Lock()
	got := slices.Clone(arrivals)
	mu.Unlock()
	if len(got) != n {
		t.Fatalf("%d requests arrived, want %d", len(got), n)
	}
	// Upper bounds only: a slow machine makes elapsed larger, never the count.
	for i, at := range got {
		allowed := burst + perSecond*at.Sub(start).Seconds() + 1
		if float64(i+1) > allowed {
			t.Errorf("request %d arrived %v after start: more than burst+rate*elapsed (%.1f)", i+1, at.Sub(start), allowed)
		}
	}
	// Waiting for the limiter respects ctx.
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	slow := newClient(t, []Endpoint{{Name: "e", URL: srv.URL, RatePerSecond: 0.001, Burst: 1}})
	slow.Deliver(context.Background(), "e", delivery("uses the burst"))
	if res := slow.Deliver(ctx, "e", delivery("waits")); res.Outcome != Retry || res.Attempted {
		t.Errorf("rate wait: %+v", res)
	}
}

func TestBackoffCeilingMonotoneToMax(t *testing.T) {
	b := Backoff{}
	prev := time.Duration(0)
	for a := 1; a <= 20; a++ {
		c := b.Ceiling(a)
		if c < prev || c > DefaultBackoffMax {
			t.Fatalf("Ceiling(%d) = %v after %v", a, c, prev)
		}
		prev = c
	}
	if b.Ceiling(1) != 2*time.Second || b.Ceiling(3) != 8*time.Second || b.Ceiling(20) != 10*time.Minute {
		t.Errorf("ceilings %v %v %v", b.Ceiling(1), b.Ceiling(3), b.Ceiling(20))
	}
	if c := (Backoff{Base: time.Hour, Max: time.Second}).Ceiling(5); c != time.Hour {
		t.Errorf("Max below Base: %v", c)
	}
	if c := b.Ceiling(1 << 30); c != DefaultBackoffMax {
		t.Errorf("huge attempt: %v", c)
	}
}

func TestBackoffJitterBounds(t *testing.T) {
	b := Backoff{Base: 100 * time.Millisecond, Max: 5 * time.Second, Attempts: 50}
	for a := 1; a < 50; a++ {
		for range 50 {
			d, ok := b.Next(a, 0)
			if !ok || d < 0 || d > b.Ceiling(a) {
				t.Fatalf("Next(%d) = %v %v, ceiling %v", a, d, ok, b.Ceiling(a))
			}
		}
	}
	lo := Backoff{Rand: func() float64 { return 0 }}
	hi := Backoff{Rand: func() float64 { return 0.999999999 }}
	for a := 1; a < 12; a++ {
		if d, _ := lo.Next(a, 0); d != 0 {
			t.Errorf("lo Next(%d) = %v", a, d)
		}
		if d, _ := hi.Next(a, 0); d < hi.Ceiling(a)-hi.Ceiling(a)/1000 || d > hi.Ceiling(a) {
			t.Errorf("hi Next(%d) = %v, want %v", a, d, hi.Ceiling(a))
		}
		if d, _ := lo.Next(a, 7*time.Second); d < 7*time.Second {
			t.Errorf("Retry-After not honoured: %v", d)
		}
	}
	if d, _ := hi.Next(11, time.Hour); d != time.Hour {
		t.Errorf("Retry-After above Max: %v", d)
	}
}

func TestBackoffStopsAfterAttempts(t *testing.T) {
	for _, b := range []Backoff{{}, {Attempts: 3}, {Attempts: 1}} {
		want := b.Attempts
		if want == 0 {
			want = DefaultBackoffAttempts
		}
		for a := 1; a < want; a++ {
			if _, ok := b.Next(a, 0); !ok {
				t.Errorf("Attempts %d: Next(%d) stopped early", want, a)
			}
		}
		if _, ok := b.Next(want, 0); ok {
			t.Errorf("Attempts %d: Next(%d) did not stop", want, want)
		}
		if _, ok := b.Next(want+1, time.Second); ok {
			t.Errorf("Attempts %d: Next(%d) did not stop", want, want+1)
		}
	}
}

func TestOutcomeString(t *testing.T) {
	if Delivered.String() != "delivered" || Retry.String() != "retry" || Permanent.String() != "permanent" || Outcome(0).String() != "Outcome(0)" {
		t.Error("Outcome.String")
	}
}
