package webhooks

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Events reach the subscribed endpoints signed, a 503 is retried, a 400 is
// not, and unsubscribed events are not sent.
func TestDispatcher(t *testing.T) {
	var mu sync.Mutex
	var got []Event
	fails := 2
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ts, _ := strconv.ParseInt(r.Header.Get(HeaderTimestamp), 10, 64)
		if r.Header.Get(HeaderSignature) != Sign([]byte("s3cret"), ts, body) || r.Header.Get("Content-Type") != "application/cloudevents+json" {
			t.Errorf("bad signature or content type: %v", r.Header)
		}
		var ev Event
		json.Unmarshal(body, &ev)
		mu.Lock()
		defer mu.Unlock()
		if ev.Subject == "doc_refused" {
			w.WriteHeader(400)
			return
		}
		if ev.Subject == "doc_flaky" && fails > 0 {
			fails--
			w.WriteHeader(503)
			return
		}
		got = append(got, ev)
	}))
	defer srv.Close()
	d := New([]Endpoint{{Name: "erp", URL: srv.URL, Secret: "s3cret", Events: []string{DocumentDelivered, DocumentFailed}}}, "edigw/test",
		slog.New(slog.DiscardHandler))
	d.Backoff = 10 * time.Millisecond
	results := map[string]int{}
	d.OnResult = func(event, outcome string) { mu.Lock(); results[event+" "+outcome]++; mu.Unlock() }
	ctx := t.Context()
	d.Start(ctx, 2)
	d.Emit(FileReceived, "file_1", nil) // not subscribed
	d.Emit(DocumentDelivered, "doc_ok", map[string]string{"partner": "acme"})
	d.Emit(DocumentFailed, "doc_flaky", nil)
	d.Emit(DocumentFailed, "doc_refused", nil)
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := results["document.failed refused"] + len(got)
		mu.Unlock()
		if n == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || results["document.delivered ok"] != 1 || results["document.failed ok"] != 1 || results["document.failed refused"] != 1 || fails != 0 {
		t.Fatalf("got %+v, results %v, fails left %d", got, results, fails)
	}
	for _, ev := range got {
		if ev.SpecVersion != "1.0" || ev.Source != "edigw/test" || ev.ID == "" || ev.Time.IsZero() || ev.Type[:len(TypePrefix)] != TypePrefix {
			t.Errorf("not a CloudEvent: %+v", ev)
		}
	}
}
