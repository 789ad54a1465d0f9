// Package webhooks tells other systems what happened, as CloudEvents 1.0
// (structured JSON) POSTed to configured URLs and signed with HMAC-SHA256:
// file.received, document.delivered, document.failed, ack.received and
// ack.overdue. Deliveries are retried with exponential backoff.
//
// The queue is in memory: events not yet delivered when the process stops
// are lost (each is also in the spool's event log, which stays the record).
package webhooks

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

// Event types.
const (
	FileReceived      = "file.received"
	DocumentDelivered = "document.delivered"
	DocumentFailed    = "document.failed"
	AckReceived       = "ack.received"
	AckOverdue        = "ack.overdue"
)

// TypePrefix makes the CloudEvents type: "com.edigw." + event.
const TypePrefix = "com.edigw."

// Endpoint is one subscriber.
type Endpoint struct {
	Name   string
	URL    string
	Secret string   // HMAC-SHA256 key
	Events []string // event names; empty = all
}

// Event is a CloudEvent in structured mode.
type Event struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            string    `json:"type"`
	Subject         string    `json:"subject,omitempty"` // the message id
	Time            time.Time `json:"time"`
	DataContentType string    `json:"datacontenttype"`
	Data            any       `json:"data"`
}

// Signature headers: the receiver computes HMAC-SHA256 over
// "<timestamp>.<body>" with the shared secret and compares it, in constant
// time, with the hex in X-Edigw-Signature ("sha256=<hex>"); the timestamp
// (Unix seconds) lets it refuse replays.
const (
	HeaderSignature = "X-Edigw-Signature"
	HeaderTimestamp = "X-Edigw-Timestamp"
)

// Sign returns the signature header value for body sent at ts.
func Sign(secret []byte, ts int64, body []byte) string {
	m := hmac.New(sha256.New, secret)
	fmt.Fprintf(m, "%d.", ts)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Dispatcher queues and delivers events.
type Dispatcher struct {
	endpoints []Endpoint
	source    string
	client    *http.Client
	log       *slog.Logger
	queue     chan job
	wg        sync.WaitGroup
	// Attempts is the number of tries per delivery (default 8); Backoff the
	// first wait, doubled per try up to 5 minutes (default 1s).
	Attempts int
	Backoff  time.Duration
	// OnResult, when set, is told of each delivery's outcome (metrics).
	OnResult func(event, outcome string)
}

type job struct {
	ep   Endpoint
	ev   Event
	body []byte
}

// New returns a dispatcher for the endpoints; source names this gateway
// (the CloudEvents source).
func New(endpoints []Endpoint, source string, log *slog.Logger) *Dispatcher {
	return &Dispatcher{endpoints: endpoints, source: source, log: log, client: &http.Client{Timeout: 15 * time.Second},
		queue: make(chan job, 10000), Attempts: 8, Backoff: time.Second}
}

// Start runs n delivery workers until ctx ends.
func (d *Dispatcher) Start(ctx context.Context, n int) {
	for range n {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case j := <-d.queue:
					d.deliver(ctx, j)
				}
			}
		}()
	}
}

// Wait waits for the workers after their context ended.
func (d *Dispatcher) Wait() { d.wg.Wait() }

// Emit queues event (e.g. FileReceived) about subject for every endpoint
// that wants it. It never blocks: a full queue drops the event with an error
// in the log.
func (d *Dispatcher) Emit(event, subject string, data any) {
	if d == nil || len(d.endpoints) == 0 {
		return
	}
	ev := Event{SpecVersion: "1.0", ID: ulid.Make().String(), Source: d.source, Type: TypePrefix + event, Subject: subject,
		Time: time.Now().UTC(), DataContentType: "application/json", Data: data}
	body, err := json.Marshal(ev)
	if err != nil {
		d.log.Error("webhook: encode", "event", event, "message_id", subject, "err", err)
		return
	}
	for _, ep := range d.endpoints {
		if len(ep.Events) > 0 && !slices.Contains(ep.Events, event) {
			continue
		}
		select {
		case d.queue <- job{ep: ep, ev: ev, body: body}:
		default:
			d.log.Error("webhook queue full: event dropped", "endpoint", ep.Name, "event", event, "message_id", subject)
			d.result(event, "dropped")
		}
	}
}

func (d *Dispatcher) result(event, outcome string) {
	if d.OnResult != nil {
		d.OnResult(event, outcome)
	}
}

// deliver tries a job until it is accepted (2xx), refused for good (4xx
// other than 408/429) or out of attempts.
func (d *Dispatcher) deliver(ctx context.Context, j job) {
	event := j.ev.Type[len(TypePrefix):]
	wait := d.Backoff
	for attempt := 1; ; attempt++ {
		status, err := d.post(ctx, j)
		switch {
		case err == nil && status/100 == 2:
			d.result(event, "ok")
			return
		case err == nil && status/100 == 4 && status != 408 && status != 429:
			d.log.Error("webhook refused", "endpoint", j.ep.Name, "event", event, "message_id", j.ev.Subject, "status", status)
			d.result(event, "refused")
			return
		case attempt >= d.Attempts:
			d.log.Error("webhook gave up", "endpoint", j.ep.Name, "event", event, "message_id", j.ev.Subject, "attempts", attempt, "status", status, "err", err)
			d.result(event, "failed")
			return
		}
		d.log.Warn("webhook will be retried", "endpoint", j.ep.Name, "event", event, "message_id", j.ev.Subject, "status", status, "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait + rand.N(wait/4+1)):
		}
		wait = min(2*wait, 5*time.Minute)
	}
}

func (d *Dispatcher) post(ctx context.Context, j job) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, j.ep.URL, bytes.NewReader(j.body))
	if err != nil {
		return 0, err
	}
	ts := time.Now().Unix()
	req.Header.Set("Content-Type", "application/cloudevents+json")
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign([]byte(j.ep.Secret), ts, j.body))
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}
