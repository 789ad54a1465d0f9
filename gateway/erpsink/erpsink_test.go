package erpsink

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edigw/edigw/gateway/erp"
)

func newSink(t *testing.T, dir string) (*Sink, *httptest.Server) {
	t.Helper()
	s, err := NewSink(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv
}

type post struct {
	endpoint, key, typ, body string
}

func (p post) do(t *testing.T, base string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/"+p.endpoint, strings.NewReader(p.body))
	req.Header.Set("Content-Type", "application/json")
	if p.key != "" {
		req.Header.Set(HeaderIdempotencyKey, p.key)
	}
	req.Header.Set(HeaderCorrelationID, "corr-"+p.key)
	if p.typ != "" {
		req.Header.Set(HeaderDocumentType, p.typ)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func TestAcceptReplayAndQuery(t *testing.T) {
	s, srv := newSink(t, "")
	first := post{"purchase-orders", "p1/000000001/0001", "purchase_order", `{"po":"PO-1"}`}
	if r := first.do(t, srv.URL); r.StatusCode != 201 || r.Header.Get(HeaderIdempotentReplay) != "" {
		t.Fatalf("first: %s %v", r.Status, r.Header)
	}
	replay := first
	replay.body = `{"po":"PO-1","changed":true}` // first wins, whatever the replay says
	if r := replay.do(t, srv.URL); r.StatusCode != 200 || r.Header.Get(HeaderIdempotentReplay) != "true" {
		t.Fatalf("replay: %s %v", r.Status, r.Header)
	}
	post{"ship-notices", "p1/000000002/0001", "ship_notice", `{"asn":"A-1"}`}.do(t, srv.URL)

	docs := s.Documents()
	if len(docs) != 2 || docs[0].Key != first.key || string(docs[0].Body) != first.body ||
		docs[0].CorrelationID != "corr-"+first.key || docs[0].Endpoint != "purchase-orders" || docs[0].DocumentType != "purchase_order" {
		t.Fatalf("documents = %+v", docs)
	}
	if s.Count(first.key) != 2 || s.Count("p1/000000002/0001") != 1 || s.Count("nope") != 0 {
		t.Errorf("counts %d %d", s.Count(first.key), s.Count("p1/000000002/0001"))
	}
	if d, ok := s.Document(first.key); !ok || d.Key != first.key {
		t.Errorf("Document: %+v %v", d, ok)
	}

	var list []Document
	getJSON(t, srv.URL+"/_sink/documents?endpoint=ship-notices", &list)
	if len(list) != 1 || list[0].Key != "p1/000000002/0001" || list[0].ReceivedAt.IsZero() {
		t.Errorf("by endpoint: %+v", list)
	}
	getJSON(t, srv.URL+"/_sink/documents?type=purchase_order", &list)
	if len(list) != 1 || list[0].Key != first.key {
		t.Errorf("by type: %+v", list)
	}
	getJSON(t, srv.URL+"/_sink/documents", &list)
	if len(list) != 2 {
		t.Errorf("all: %+v", list)
	}

	var stats struct {
		Endpoints map[string]EndpointStats
		Total     EndpointStats
	}
	getJSON(t, srv.URL+"/_sink/stats", &stats)
	if po := stats.Endpoints["purchase-orders"]; po != (EndpointStats{Posts: 2, Unique: 1, Replays: 1}) {
		t.Errorf("purchase-orders stats %+v", po)
	}
	if stats.Total != (EndpointStats{Posts: 3, Unique: 2, Replays: 1}) {
		t.Errorf("total %+v", stats.Total)
	}
}

func TestRejectsMalformed(t *testing.T) {
	s, srv := newSink(t, "")
	if r := (post{"orders", "", "", `{}`}).do(t, srv.URL); r.StatusCode != 400 {
		t.Errorf("no key: %s", r.Status)
	}
	if r := (post{"orders", "k", "", `{not json`}).do(t, srv.URL); r.StatusCode != 400 {
		t.Errorf("bad JSON: %s", r.Status)
	}
	if r := (post{"_sink", "k", "", `{}`}).do(t, srv.URL); r.StatusCode != 404 {
		t.Errorf("reserved name: %s", r.Status)
	}
	if r, _ := http.Get(srv.URL + "/orders"); r.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %s", r.Status)
	}
	if len(s.Documents()) != 0 || s.Stats()["orders"].Rejected != 2 {
		t.Errorf("docs %v stats %+v", s.Documents(), s.Stats())
	}
}

func TestConcurrentReplaysStoreOnce(t *testing.T) {
	dir := t.TempDir()
	s, srv := newSink(t, dir)
	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			r := post{"invoices", "same-key", "invoice", fmt.Sprintf(`{"n":%d}`, i)}.do(t, srv.URL)
			if r.StatusCode == 200 && r.Header.Get(HeaderIdempotentReplay) != "true" {
				t.Errorf("200 without replay header")
			}
			mu.Lock()
			statuses[r.StatusCode]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if statuses[201] != 1 || statuses[200] != 9 {
		t.Errorf("statuses %v, want one 201 and nine 200", statuses)
	}
	files, _ := os.ReadDir(dir)
	if len(files) != 1 || len(s.Documents()) != 1 || s.Count("same-key") != 10 {
		t.Errorf("files %d, documents %d, count %d", len(files), len(s.Documents()), s.Count("same-key"))
	}
	if st := s.Stats()["invoices"]; st != (EndpointStats{Posts: 10, Unique: 1, Replays: 9}) {
		t.Errorf("stats %+v", st)
	}
}

func TestPersistenceSurvivesNewSink(t *testing.T) {
	dir := t.TempDir()
	s1, srv1 := newSink(t, dir)
	keys := []string{"p1/1/1", "p1/1/2", "../../etc/passwd", strings.Repeat("k", 300)}
	for i, k := range keys {
		if r := (post{"orders", k, "purchase_order", fmt.Sprintf(`{"i":%d}`, i)}).do(t, srv1.URL); r.StatusCode != 201 {
			t.Fatalf("%s: %s", k, r.Status)
		}
	}
	srv1.Close()
	files, _ := os.ReadDir(dir)
	for _, f := range files {
		if strings.HasPrefix(f.Name(), ".tmp") || filepath.Ext(f.Name()) != ".json" {
			t.Errorf("stray file %s", f.Name())
		}
	}
	if len(files) != len(keys) {
		t.Fatalf("%d files, want %d", len(files), len(keys))
	}

	s2, srv2 := newSink(t, dir)
	want, got := s1.Documents(), s2.Documents()
	if len(got) != len(want) {
		t.Fatalf("reloaded %d documents, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Key != want[i].Key || !got[i].ReceivedAt.Equal(want[i].ReceivedAt) || !bytes.Equal(got[i].Body, want[i].Body) {
			t.Errorf("reloaded %+v, want %+v", got[i], want[i])
		}
	}
	if r := (post{"orders", keys[0], "purchase_order", `{"i":0}`}).do(t, srv2.URL); r.StatusCode != 200 || r.Header.Get(HeaderIdempotentReplay) != "true" {
		t.Errorf("replay after restart: %s", r.Status)
	}
	if st := s2.Stats()["orders"]; st.Unique != len(keys) || st.Replays != 1 {
		t.Errorf("stats after restart %+v", st)
	}
}

func TestCorruptFileIsAnError(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "bad.json"), []byte("{"), 0o644)
	if _, err := NewSink(dir); err == nil || !strings.Contains(err.Error(), "bad.json") {
		t.Errorf("err = %v", err)
	}
}

func addFault(t *testing.T, base, js string) int {
	t.Helper()
	resp, err := http.Post(base+"/_sink/faults", "application/json", strings.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestFaultCount(t *testing.T) {
	s, srv := newSink(t, "")
	if st := addFault(t, srv.URL, `{"endpoint": "ship-notices", "status": 503, "count": 5, "retryAfter": 1}`); st != 201 {
		t.Fatalf("add fault: %d", st)
	}
	if r := (post{"invoices", "other", "", `{}`}).do(t, srv.URL); r.StatusCode != 201 {
		t.Errorf("other endpoint: %s", r.Status)
	}
	for i := range 5 {
		r := post{"ship-notices", "asn-1", "", `{}`}.do(t, srv.URL)
		if r.StatusCode != 503 || r.Header.Get("Retry-After") != "1" {
			t.Errorf("post %d: %s Retry-After %q", i, r.Status, r.Header.Get("Retry-After"))
		}
	}
	if r := (post{"ship-notices", "asn-1", "", `{}`}).do(t, srv.URL); r.StatusCode != 201 {
		t.Errorf("after the fault: %s", r.Status)
	}
	if len(s.Faults()) != 0 || s.Count("asn-1") != 1 {
		t.Errorf("faults %v count %d", s.Faults(), s.Count("asn-1"))
	}
	if st := s.Stats()["ship-notices"]; st != (EndpointStats{Posts: 6, Unique: 1, Faulted: 5}) {
		t.Errorf("stats %+v", st)
	}
}

func TestFaultMatch(t *testing.T) {
	s, srv := newSink(t, "")
	if st := addFault(t, srv.URL, `{"status": 400, "match": "PO-9"}`); st != 201 {
		t.Fatalf("add fault: %d", st)
	}
	for range 3 { // no count: until cleared
		if r := (post{"orders", "k9", "", `{"po":"PO-9"}`}).do(t, srv.URL); r.StatusCode != 400 {
			t.Errorf("matching: %s", r.Status)
		}
	}
	if r := (post{"orders", "k1", "", `{"po":"PO-1"}`}).do(t, srv.URL); r.StatusCode != 201 {
		t.Errorf("not matching: %s", r.Status)
	}
	var faults []Fault
	getJSON(t, srv.URL+"/_sink/faults", &faults)
	if len(faults) != 1 || faults[0].Match != "PO-9" {
		t.Errorf("faults %+v", faults)
	}
	req, _ := http.NewRequest(http.MethodDelete, srv.URL+"/_sink/faults", nil)
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != 204 {
		t.Fatalf("clear: %v %v", r, err)
	}
	if r := (post{"orders", "k9", "", `{"po":"PO-9"}`}).do(t, srv.URL); r.StatusCode != 201 {
		t.Errorf("after clear: %s", r.Status)
	}
	if s.Count("k9") != 1 {
		t.Errorf("count %d", s.Count("k9"))
	}
}

func TestBadFaults(t *testing.T) {
	_, srv := newSink(t, "")
	for _, js := range []string{`{}`, `{"status": 42}`, `{"status": 503, "count": -1}`, `{"status": 503, "bogus": 1}`, `[`} {
		if st := addFault(t, srv.URL, js); st != 400 {
			t.Errorf("%s: %d, want 400", js, st)
		}
	}
}

// The erp client against the sink: the contract the pipeline relies on.
func TestWithERPClient(t *testing.T) {
	s, srv := newSink(t, t.TempDir())
	c, err := erp.NewClient([]erp.Endpoint{
		{Name: "ship-notices", URL: srv.URL + "/ship-notices"},
		{Name: "orders", URL: srv.URL + "/orders", Timeout: 100 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d := erp.Delivery{Body: []byte(`{"asn":"A-1"}`), IdempotencyKey: "asn-1", CorrelationID: "m1", DocumentType: "ship_notice"}

	s.SetFault(Fault{Endpoint: "ship-notices", Status: 503, Count: 1, RetryAfter: 7})
	if r := c.Deliver(ctx, "ship-notices", d); r.Outcome != erp.Retry || r.RetryAfter != 7*time.Second {
		t.Errorf("fault: %+v", r)
	}
	if r := c.Deliver(ctx, "ship-notices", d); r.Outcome != erp.Delivered || r.Replayed || r.Status != 201 {
		t.Errorf("first: %+v", r)
	}
	if r := c.Deliver(ctx, "ship-notices", d); r.Outcome != erp.Delivered || !r.Replayed {
		t.Errorf("replay: %+v", r)
	}

	s.SetFault(Fault{Status: 400, Match: "PO-9"})
	bad := erp.Delivery{Body: []byte(`{"po":"PO-9"}`), IdempotencyKey: "po-9"}
	if r := c.Deliver(ctx, "orders", bad); r.Outcome != erp.Permanent || r.Status != 400 {
		t.Errorf("match fault: %+v", r)
	}

	s.SetFault(Fault{Endpoint: "orders", DelayMs: 2000, Count: 1})
	slow := erp.Delivery{Body: []byte(`{"po":"PO-2"}`), IdempotencyKey: "po-2"}
	if r := c.Deliver(ctx, "orders", slow); r.Outcome != erp.Retry || !r.Attempted {
		t.Errorf("delay fault: %+v", r)
	}
	if r := c.Deliver(ctx, "orders", slow); r.Outcome != erp.Delivered {
		t.Errorf("after delay fault: %+v", r)
	}
	if s.Count("asn-1") != 2 || s.Count("po-9") != 0 || s.Count("po-2") != 1 || len(s.Documents()) != 2 {
		t.Errorf("counts %d %d %d, documents %d", s.Count("asn-1"), s.Count("po-9"), s.Count("po-2"), len(s.Documents()))
	}
}

func TestServeAndShutdown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSink("")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, s, "", discard()) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/_sink/health")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("health: %v %v", resp, err)
	}
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve: %v", err)
	}
}

func TestRunBadAddress(t *testing.T) {
	if err := Run(context.Background(), "127.0.0.1:-1", "", discard()); err == nil {
		t.Error("want an error")
	}
}
