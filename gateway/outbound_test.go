package gateway_test

import (
	"bytes"
	"crypto/hmac"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edigw/edigw/gateway/webhooks"
)

type apiPO struct {
	ID, PONumber, ISA13, POStatus string
	File                          struct{ Name, State string }
	Ack                           *struct{ Kind, Status string }
	Responses                     []apiDoc
}

// A purchase order posted to the API reaches the partner as a valid 850;
// the partner's 997 marks it accepted (or rejected); one left unanswered
// becomes overdue.
func TestOutboundPurchaseOrders(t *testing.T) {
	in, out := t.TempDir(), t.TempDir() // the partner's folders: what it sends us, what we send it
	hooks := newHookReceiver(t, "hook-secret-for-tests")
	t.Setenv("EDIGW_TEST_HOOK_SECRET", "hook-secret-for-tests")
	e := newEnvConfig(t, func(parts string) {
		p := filepath.Join(parts, "globex", "partner.yaml")
		b, _ := os.ReadFile(p)
		s := string(b)
		s = regexp.MustCompile(`(?s)\ninbound:.*?\ndocuments:`).ReplaceAllString(s, fmt.Sprintf(`
inbound:
  polls:
    - name: globex-dir
      url: file://%s
      schedule: "* * * * * *"
      pattern: "*.x12"
      stable_for: 0s
      after_fetch: delete
outbound:
  channel: push
  url: file://%s
documents:`, in, out))
		s = strings.Replace(s, "acks:\n  functional: \"997\"", "acks:\n  functional: \"997\"\n  expect_ack_within: 4s", 1)
		os.WriteFile(p, []byte(s), 0o644)
	}, fmt.Sprintf("webhooks: [{name: test, url: %q, secret_env: EDIGW_TEST_HOOK_SECRET}]\n", hooks.url))
	po, err := os.ReadFile("../deploy/examples/partners/globex/testdata/po-4500012401.json")
	if err != nil {
		t.Fatal(err)
	}
	send := func(number string) apiFile {
		t.Helper()
		var body map[string]any
		json.Unmarshal(po, &body)
		body["poNumber"] = number
		status, b := e.call("POST", "/api/v1/partners/globex/purchase-orders", "ops", body)
		var f apiFile
		if status != http.StatusAccepted || json.Unmarshal(b, &f) != nil || f.Direction != "out" {
			t.Fatalf("send PO %s: %d %s", number, status, b)
		}
		return f
	}
	if status, _ := e.call("POST", "/api/v1/partners/globex/purchase-orders", "watcher", json.RawMessage(po)); status != http.StatusForbidden {
		t.Errorf("a viewer sends a PO: %d, want 403", status)
	}
	if status, b := e.call("POST", "/api/v1/partners/globex/purchase-orders", "ops", map[string]any{"poNumber": 7}); status != http.StatusBadRequest {
		t.Errorf("an invalid PO: %d %s, want 400", status, b)
	}
	if status, _ := e.call("POST", "/api/v1/partners/acme/purchase-orders", "ops", json.RawMessage(po)); status != http.StatusBadRequest {
		t.Errorf("a PO for a partner without an outbound 850 mapping: %d, want 400", status)
	}

	accepted, rejected, unanswered := send("4500012401"), send("4500012402"), send("4500012403")
	// Each reaches the partner as a valid 850 (read back with our own parser).
	var x12 = map[string][]byte{}
	for _, f := range []apiFile{accepted, rejected, unanswered} {
		path := filepath.Join(out, f.Name)
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if b, err := os.ReadFile(path); err == nil {
				x12[f.Name] = b
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not pushed to the partner's folder: %v\n%s", f.Name, names(out), tail(e.log(), 20))
			}
		}
		if out, err := exec.Command(edigwBin, "x12", "validate", path).CombinedOutput(); err != nil || !bytes.Contains(out, []byte("set 850")) {
			t.Errorf("%s is not a valid 850: %v\n%s", f.Name, err, out)
		}
	}
	if !bytes.Contains(x12[accepted.Name], []byte("BEG*00*SA*4500012401")) {
		t.Errorf("850 for PO 4500012401:\n%s", x12[accepted.Name])
	}

	// The partner answers two of them: a 997 that accepts, one that rejects.
	ack := func(f apiFile, reject bool, control int) {
		t.Helper()
		b, err := exec.Command(edigwBin, "x12", "ack", "--control", fmt.Sprint(control), filepath.Join(out, f.Name)).Output()
		if err != nil {
			t.Fatalf("x12 ack: %v", err)
		}
		if reject {
			b = bytes.Replace(b, []byte("AK5*A~"), []byte("AK5*R*5~"), 1)
			b = regexp.MustCompile(`AK9\*A\*1\*1\*1~`).ReplaceAll(b, []byte("AK9*R*1*1*0~"))
		}
		os.WriteFile(filepath.Join(in, "997-"+f.Name), b, 0o644)
	}
	ack(accepted, false, 71)
	ack(rejected, true, 72)

	want := map[string]string{"4500012401": "accepted", "4500012402": "rejected", "4500012403": "overdue"}
	var pos []apiPO
	for deadline := time.Now().Add(25 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		pos = nil
		e.get("/api/v1/purchase-orders?partner=globex", "watcher", &pos)
		got := map[string]string{}
		for _, p := range pos {
			got[p.PONumber] = p.POStatus
		}
		if fmt.Sprint(got) == fmt.Sprint(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("PO statuses %v, want %v\n%s", got, want, tail(e.log(), 30))
		}
	}
	for _, p := range pos {
		switch p.PONumber {
		case "4500012401", "4500012402":
			if p.Ack == nil || p.Ack.Kind != "997" || p.File.State != "done" {
				t.Errorf("PO %s: %+v", p.PONumber, p)
			}
		case "4500012403":
			if p.Ack != nil {
				t.Errorf("unanswered PO has an ack: %+v", p)
			}
			// The overdue check (every 300ms here) flags it once.
			var d struct {
				Events []struct{ Kind, Message string }
			}
			n := 0
			for deadline := time.Now().Add(5 * time.Second); n == 0 && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
				d.Events = nil
				e.get("/api/v1/documents/"+p.ID, "watcher", &d)
				for _, ev := range d.Events {
					if strings.HasPrefix(ev.Message, "functional ack overdue") {
						n++
					}
				}
			}
			time.Sleep(time.Second) // more checks run: still one event
			d.Events, n = nil, 0
			e.get("/api/v1/documents/"+p.ID, "watcher", &d)
			for _, ev := range d.Events {
				if strings.HasPrefix(ev.Message, "functional ack overdue") {
					n++
				}
			}
			if n != 1 {
				t.Errorf("overdue PO: %d overdue events, want exactly 1: %+v", n, d.Events)
			}
		}
	}
	// The ERP got a functional-ack status document for each 997, with the PO number.
	statuses := map[string]map[string]any{}
	for _, d := range e.sink.Documents() {
		var doc map[string]any
		if json.Unmarshal(d.Body, &doc) == nil && doc["ackType"] == "997" {
			statuses[fmt.Sprint(doc["status"])] = doc
		}
	}
	if len(statuses) != 2 || statuses["accepted"] == nil || statuses["rejected"] == nil {
		t.Errorf("functional-ack status documents at the ERP: %v", statuses)
	} else if sets, _ := statuses["rejected"]["transactionSets"].([]any); len(sets) != 1 || sets[0].(map[string]any)["code"] != "R" {
		t.Errorf("the rejecting 997's status document: %v", statuses["rejected"])
	}
	var acks apiPage
	e.get("/api/v1/documents?type=997&key=4500012402", "watcher", &acks)
	if len(acks.Items) != 1 || acks.Items[0].State != "done" {
		t.Errorf("the 997 to PO 4500012402, by PO number: %+v", acks.Items)
	}

	// The partner ships: its 856 names PO 4500012401 (and another), and is linked to it.
	sample, _ := os.ReadFile("../deploy/examples/partners/globex/testdata/856-pick-pack.x12")
	os.WriteFile(filepath.Join(in, "856.x12"), sample, 0o644)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		pos = nil
		e.get("/api/v1/purchase-orders?partner=globex", "watcher", &pos)
		linked := false
		for _, p := range pos {
			if p.PONumber == "4500012401" {
				for _, r := range p.Responses {
					linked = linked || r.Type == "856"
				}
			}
		}
		if linked {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the 856 is not linked to PO 4500012401: %+v\n%s", pos, tail(e.log(), 20))
		}
	}
	var byPO apiPage
	e.get("/api/v1/documents?key=4500012401", "watcher", &byPO)
	types := map[string]bool{}
	for _, d := range byPO.Items {
		types[d.Type] = true
	}
	if !types["850"] || !types["856"] || !types["997"] {
		t.Errorf("search by PO 4500012401 finds %+v, want the 850, the 997 and the 856", byPO.Items)
	}

	var overdue []apiPO
	e.get("/api/v1/purchase-orders?status=overdue", "watcher", &overdue)
	if len(overdue) != 1 || overdue[0].PONumber != "4500012403" {
		t.Fatalf("?status=overdue: %+v", overdue)
	}

	// The partner sends the accepting 997 again (same ISA13, other bytes): a
	// duplicate interchange, recorded as such, and not a second ack.
	again, err := exec.Command(edigwBin, "x12", "ack", "--control", "71", filepath.Join(out, accepted.Name)).Output()
	if err != nil {
		t.Fatalf("x12 ack: %v", err)
	}
	os.WriteFile(filepath.Join(in, "997-again-"+accepted.Name), append(again, '\n'), 0o644)
	for deadline := time.Now().Add(25 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		var files struct {
			Items []struct{ ID, Name, State string }
		}
		e.get("/api/v1/files?partner=globex", "watcher", &files)
		done := false
		for _, f := range files.Items {
			done = done || f.Name == "997-again-"+accepted.Name && f.State == "done"
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the re-sent 997 was not processed: %+v\n%s", files.Items, tail(e.log(), 30))
		}
	}

	// Webhooks told the subscriber: two acks received, one overdue (once), four files received.
	for deadline := time.Now().Add(10 * time.Second); hooks.count("ack.received", "") < 2 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	if n := hooks.count("ack.received", ""); n != 2 {
		t.Errorf("%d ack.received events, want 2", n)
	}
	if n := hooks.count("ack.overdue", overdue[0].ID); n != 1 {
		t.Errorf("%d ack.overdue events for the unanswered PO, want 1", n)
	}
	if n := hooks.count("file.received", ""); n != 4 {
		t.Errorf("%d file.received events, want 4 (the three 997s and the 856)", n)
	}
}

type apiFile struct {
	ID, Name, Direction, State string
}

func names(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// hookReceiver is a webhook subscriber on loopback that checks signatures.
type hookReceiver struct {
	url    string
	mu     sync.Mutex
	events []webhooks.Event
}

func newHookReceiver(t *testing.T, secret string) *hookReceiver {
	h := &hookReceiver{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ts, _ := strconv.ParseInt(r.Header.Get(webhooks.HeaderTimestamp), 10, 64)
		if !hmac.Equal([]byte(r.Header.Get(webhooks.HeaderSignature)), []byte(webhooks.Sign([]byte(secret), ts, body))) {
			t.Errorf("webhook with a bad signature: %s", body)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var ev webhooks.Event
		if err := json.Unmarshal(body, &ev); err != nil || ev.SpecVersion != "1.0" {
			t.Errorf("webhook body is not a CloudEvent: %s", body)
		}
		h.mu.Lock()
		h.events = append(h.events, ev)
		h.mu.Unlock()
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	h.url = "http://" + ln.Addr().String() + "/events"
	return h
}

// count returns how many events of type (e.g. "ack.received") came about subject ("" = any).
func (h *hookReceiver) count(typ, subject string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, ev := range h.events {
		if ev.Type == webhooks.TypePrefix+typ && (subject == "" || ev.Subject == subject) {
			n++
		}
	}
	return n
}
