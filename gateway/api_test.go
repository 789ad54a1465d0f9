package gateway_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// call makes one API request as the named test token ("" = none) and
// returns the status and body.
func (e *env) call(method, path, token string, body any) (int, []byte) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", e.httpPort, path), rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+testTokens[token])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// get calls GET as token, wants 200 and decodes the JSON into v.
func (e *env) get(path, token string, v any) {
	e.t.Helper()
	status, b := e.call("GET", path, token, nil)
	if status != http.StatusOK {
		e.t.Fatalf("GET %s as %s: %d %s", path, token, status, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			e.t.Fatalf("GET %s: %v\n%s", path, err, b)
		}
	}
}

type apiDoc struct {
	ID, FileID, InterchangeID, Partner, Type, BusinessKey, State, LastError string
	GS06                                                                    string `json:"gs06"`
	ST02                                                                    string `json:"st02"`
}

type apiPage struct {
	Items []apiDoc
	Next  string
}

func TestAPI(t *testing.T) {
	// The test counts globex's poll runs: its schedule (every 5 minutes at
	// second 0) must not add one when the test runs across such a minute.
	e := newEnvWith(t, func(parts string) {
		p := filepath.Join(parts, "globex", "partner.yaml")
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte(`schedule: "0 */5 * * * *"`)) {
			t.Fatalf("globex's poll schedule not found in %s: %v", p, err)
		}
		os.WriteFile(p, bytes.Replace(b, []byte(`"0 */5 * * * *"`), []byte(`"0 0 0 1 1 *"`), 1), 0o644)
	})
	ex := "../deploy/examples/partners/"
	po, _ := os.ReadFile("../mapping/testdata/po-in.edi")
	bad := bytes.ReplaceAll(bytes.ReplaceAll(po, []byte("000000101"), []byte("000000102")), []byte("BEG*00*SA*PO-4501"), []byte("BEG*00*XX*PO-4502"))
	badFile := filepath.Join(e.dir, "bad-850.edi")
	os.WriteFile(badFile, bad, 0o644)
	if out, err := e.sftp("acme", "cd inbox\nput "+ex+"acme/testdata/856-two-orders.x12\n"); err != nil {
		t.Fatalf("upload: %v\n%s", err, out)
	}
	if out, err := e.sftp("retail", "cd inbox\nput ../mapping/testdata/po-in.edi\nput "+badFile+"\n"); err != nil {
		t.Fatalf("upload: %v\n%s", err, out)
	}
	e.waitDocs(2, 30*time.Second)

	// Health needs no token; everything else does.
	for _, p := range []string{"/healthz", "/readyz"} {
		if status, b := e.call("GET", p, "", nil); status != 200 {
			t.Errorf("%s: %d %s", p, status, b)
		}
	}
	if status, _ := e.call("GET", "/api/v1/documents", "", nil); status != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", status)
	}
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/api/v1/documents", e.httpPort), nil)
	req.Header.Set("Authorization", "Bearer not-a-token-at-all")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong token: %v %v, want 401", resp.StatusCode, err)
	}
	req.Header.Del("Authorization")
	req.SetBasicAuth("watcher", testTokens["watcher"])
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("basic auth with the token's name and secret: %v %v, want 200", resp.StatusCode, err)
	}

	// Search: by PO number, partner and type, control numbers, direction, state, dates.
	var pg apiPage
	pg = apiPage{}
	e.get("/api/v1/documents?key=PO-4501", "watcher", &pg)
	if len(pg.Items) != 1 || pg.Items[0].Type != "850" || pg.Items[0].Partner != "retail" {
		t.Fatalf("by PO number: %+v", pg.Items)
	}
	po850 := pg.Items[0]
	pg = apiPage{}
	e.get("/api/v1/documents?partner=acme&type=856", "watcher", &pg)
	if len(pg.Items) != 1 {
		t.Fatalf("acme 856: %+v", pg.Items)
	}
	asn := pg.Items[0]
	pg = apiPage{}
	e.get("/api/v1/documents?gs06="+asn.GS06+"&st02="+asn.ST02+"&partner=acme", "watcher", &pg)
	if len(pg.Items) != 1 || pg.Items[0].ID != asn.ID {
		t.Errorf("by GS06/ST02: %+v", pg.Items)
	}
	// The rejected 850 reaches no ERP: wait for its file to be done.
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		pg = apiPage{}
		e.get("/api/v1/documents?isa13=000000102&state=done", "watcher", &pg)
		if len(pg.Items) > 0 {
			break
		}
	}
	if len(pg.Items) != 1 || pg.Items[0].BusinessKey != "" || pg.Items[0].Partner != "retail" {
		t.Fatalf("by ISA13 (the rejected 850): %+v", pg.Items)
	}
	rejected := pg.Items[0]
	pg = apiPage{}
	e.get("/api/v1/documents?direction=out", "watcher", &pg)
	if len(pg.Items) != 0 {
		t.Errorf("outbound documents before any PO was sent: %+v", pg.Items)
	}
	pg = apiPage{}
	e.get("/api/v1/documents?state=done&partner=retail", "watcher", &pg)
	if len(pg.Items) != 2 {
		t.Errorf("by state: %+v", pg.Items) // a rejected set is archived, then done
	}
	pg = apiPage{}
	e.get("/api/v1/documents?was=rejected", "watcher", &pg)
	if len(pg.Items) != 1 || pg.Items[0].ID != rejected.ID {
		t.Errorf("by a state gone through (was=rejected): %+v", pg.Items)
	}
	tomorrow := time.Now().Add(24 * time.Hour).Format("2006-01-02")
	pg = apiPage{}
	e.get("/api/v1/documents?since="+tomorrow, "watcher", &pg)
	if len(pg.Items) != 0 {
		t.Errorf("since tomorrow: %+v", pg.Items)
	}
	pg = apiPage{}
	e.get("/api/v1/documents?limit=1", "watcher", &pg)
	if len(pg.Items) != 1 || pg.Next == "" {
		t.Errorf("limit 1: %d items, next %q", len(pg.Items), pg.Next)
	}
	var pg2 apiPage
	e.get("/api/v1/documents?limit=1&cursor="+url.QueryEscape(pg.Next), "watcher", &pg2)
	if len(pg2.Items) != 1 || pg2.Items[0].ID == pg.Items[0].ID {
		t.Errorf("second page: %+v after %+v", pg2.Items, pg.Items)
	}
	for _, q := range []string{"limit=0", "since=yesterday"} {
		if status, b := e.call("GET", "/api/v1/documents?"+q, "watcher", nil); status != http.StatusBadRequest || !bytes.Contains(b, []byte("error")) {
			t.Errorf("?%s: %d %s, want 400 with an error", q, status, b)
		}
	}

	// Detail: file, interchange with the ack we sent, mapped JSON, ERP response, timeline.
	var detail struct {
		apiDoc
		File        struct{ Name, Channel string }
		Interchange struct {
			ISA13 string `json:"isa13"`
			Ack   struct{ Kind, Status string }
		}
		Mapped      map[string]any
		ERPResponse struct {
			Status int
			Body   string
		} `json:"erpResponse"`
		Events []struct{ Kind, To string }
	}
	pg = apiPage{}
	e.get("/api/v1/documents/"+po850.ID, "watcher", &detail)
	// The ERP's answer (the test sink's, kept inline in the record) is shown as it came.
	if detail.File.Name != "po-in.edi" || detail.Interchange.ISA13 != "000000101" || detail.Interchange.Ack.Kind != "997" ||
		detail.Mapped["poNumber"] != "PO-4501" || detail.ERPResponse.Status/100 != 2 || len(detail.Events) < 2 ||
		!strings.Contains(detail.ERPResponse.Body, `"retail:ZZ-SUPPLIERX:000000101:101:0001"`) || !strings.Contains(detail.ERPResponse.Body, `"accepted"`) {
		t.Errorf("document detail: %+v", detail)
	}
	var mapped map[string]any
	pg = apiPage{}
	e.get("/api/v1/documents/"+po850.ID+"/mapped", "watcher", &mapped)
	if mapped["poNumber"] != "PO-4501" {
		t.Errorf("mapped: %v", mapped)
	}
	if status, _ := e.call("GET", "/api/v1/documents/doc_01HZZZZZZZZZZZZZZZZZZZZZZZ", "watcher", nil); status != http.StatusNotFound {
		t.Errorf("unknown document: %d, want 404", status)
	}

	var files struct {
		Items []struct{ ID, Name, Channel, State string }
	}
	e.get("/api/v1/files?partner=retail", "watcher", &files)
	if len(files.Items) != 2 {
		t.Fatalf("retail files: %+v", files.Items)
	}
	var fileDetail struct {
		Name         string
		Interchanges []struct {
			ISA13 string `json:"isa13"`
		}
		Documents []apiDoc
		Events    []any
	}
	e.get("/api/v1/files/"+rejected.FileID, "watcher", &fileDetail)
	if fileDetail.Name != "bad-850.edi" || len(fileDetail.Interchanges) != 1 || len(fileDetail.Documents) != 1 || len(fileDetail.Events) == 0 {
		t.Errorf("file detail: %+v", fileDetail)
	}
	var rejDetail struct {
		Events []struct{ Kind, To, Message string }
	}
	e.get("/api/v1/documents/"+rejected.ID, "watcher", &rejDetail)
	wasRejected := false
	for _, ev := range rejDetail.Events {
		wasRejected = wasRejected || (ev.To == "rejected" && strings.Contains(ev.Message, "BEG02"))
	}
	if !wasRejected {
		t.Errorf("the bad 850's timeline does not show its rejection naming BEG02: %+v", rejDetail.Events)
	}
	status, raw := e.call("GET", "/api/v1/files/"+rejected.FileID+"/raw", "watcher", nil)
	if status != 200 || !bytes.Equal(raw, bad) {
		t.Errorf("raw: %d, %d bytes (want the %d uploaded)", status, len(raw), len(bad))
	}
	var segs struct {
		Segments []struct {
			N        int
			Tag      string
			Elements []string
			Findings []struct {
				Level, Code, Text string
				Element           int
			}
		}
	}
	e.get("/api/v1/files/"+rejected.FileID+"/segments", "watcher", &segs)
	found := false
	for _, s := range segs.Segments {
		if s.Tag == "BEG" {
			// The segment error (AK304 8) and its element error (BEG02, AK403 7).
			found = len(s.Findings) == 2 && s.Findings[0].Level == "segment" && s.Findings[0].Code == "8" &&
				s.Findings[1].Level == "element" && s.Findings[1].Element == 2 && s.Findings[1].Code == "7" && s.Elements[1] == "XX"
			if !found {
				t.Errorf("BEG line: %+v, want the segment finding and the element finding on BEG02", s)
			}
		} else if len(s.Findings) > 0 && s.Tag != "ST" && s.Tag != "GS" && s.Tag != "ISA" {
			t.Errorf("finding on %s (segment %d): %+v", s.Tag, s.N, s.Findings)
		}
	}
	if !found || len(segs.Segments) < 10 || segs.Segments[0].Tag != "ISA" {
		t.Errorf("segments: %d lines, BEG finding found %v", len(segs.Segments), found)
	}

	var tree struct {
		Interchanges []struct {
			Control string
			Groups  []struct {
				Sets []struct {
					ID, Status string
				}
			}
		}
	}
	e.get("/api/v1/files/"+rejected.FileID+"/tree", "watcher", &tree)
	if len(tree.Interchanges) != 1 || len(tree.Interchanges[0].Groups) != 1 || len(tree.Interchanges[0].Groups[0].Sets) != 1 ||
		tree.Interchanges[0].Groups[0].Sets[0].Status != "R" {
		t.Errorf("parsed tree of the bad 850: %+v", tree)
	}

	// Partners and schedules.
	var parts []struct {
		ID, Name, Outbound string
		SFTPUsers          []string `json:"sftpUsers"`
		Polls              []struct{ Name string }
	}
	e.get("/api/v1/partners", "watcher", &parts)
	ids := map[string]int{}
	for i, p := range parts {
		ids[p.ID] = i
	}
	if _, ok := ids["retail"]; !ok || len(parts) != 4 || parts[ids["globex"]].Outbound == "outbox" || len(parts[ids["globex"]].Polls) != 1 {
		t.Errorf("partners: %+v", parts)
	}
	var one struct{ ID string }
	e.get("/api/v1/partners/acme", "watcher", &one)
	if one.ID != "acme" {
		t.Errorf("partner acme: %+v", one)
	}
	if status, _ := e.call("GET", "/api/v1/partners/nobody", "watcher", nil); status != http.StatusNotFound {
		t.Errorf("unknown partner: %d", status)
	}
	var polls []struct{ Partner, Name string }
	e.get("/api/v1/schedules", "watcher", &polls)
	if len(polls) != 2 {
		t.Errorf("schedules: %+v", polls)
	}
	if status, _ := e.call("POST", "/api/v1/schedules/globex/globex-ftp/run", "watcher", nil); status != http.StatusForbidden {
		t.Errorf("viewer runs a poll: %d, want 403", status)
	}
	var run struct {
		ID           int64
		Status, Node string
		Errors       []string
	}
	status, b := e.call("POST", "/api/v1/schedules/globex/globex-ftp/run", "ops", nil)
	if status != 200 || json.Unmarshal(b, &run) != nil || run.Status != "failed" || len(run.Errors) == 0 {
		t.Errorf("operator runs the (unreachable) globex poll: %d %s, want 200 with a failed run and its error", status, b)
	}
	var runs []struct{ ID int64 }
	e.get("/api/v1/schedules/globex/globex-ftp/runs", "watcher", &runs)
	if len(runs) != 1 || runs[0].ID != run.ID {
		t.Errorf("runs: %+v", runs)
	}
	if status, _ := e.call("POST", "/api/v1/schedules/globex/nope/run", "ops", nil); status != http.StatusNotFound {
		t.Errorf("unknown poll: %d, want 404", status)
	}

	// Actions: a viewer cannot act; an operator can; every attempt is audited.
	if status, _ := e.call("POST", "/api/v1/messages/"+po850.ID+"/replay", "watcher", map[string]string{"to": "mapped", "reason": "try"}); status != http.StatusForbidden {
		t.Errorf("viewer replay: %d, want 403", status)
	}
	if status, b := e.call("POST", "/api/v1/messages/"+po850.ID+"/replay", "ops", map[string]string{"to": "mapped", "reason": "ERP lost it"}); status != 200 {
		t.Errorf("operator replay: %d %s", status, b)
	}
	if status, _ := e.call("POST", "/api/v1/messages/"+po850.ID+"/replay", "ops", map[string]string{"to": "sideways"}); status != http.StatusBadRequest {
		t.Errorf("replay to a bad state: %d, want 400", status)
	}
	if status, b := e.call("POST", "/api/v1/messages/"+po850.ID+"/replay", "ops", map[string]string{"to": "mapped", "unknown": "x"}); status != http.StatusBadRequest {
		t.Errorf("replay with an unknown field: %d %s, want 400", status, b)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		pg = apiPage{}
		e.get("/api/v1/documents/"+po850.ID, "watcher", &detail)
		replayed := false
		for _, ev := range detail.Events {
			replayed = replayed || ev.Kind == "replay"
		}
		if replayed && detail.State == "done" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replayed document did not finish: %+v", detail)
		}
		time.Sleep(200 * time.Millisecond)
	}
	var retry struct{ Result string }
	status, b = e.call("POST", "/api/v1/messages/"+po850.ID+"/retry", "ops", map[string]string{})
	if status != 200 || json.Unmarshal(b, &retry) != nil || !strings.Contains(retry.Result, "nothing to retry") {
		t.Errorf("retry of a done document: %d %s", status, b)
	}
	if status, _ := e.call("POST", "/api/v1/messages/"+rejected.ID+"/resolve", "ops", map[string]string{}); status != http.StatusBadRequest {
		t.Errorf("resolve without a comment: %d, want 400", status)
	}
	if status, b := e.call("POST", "/api/v1/messages/"+rejected.ID+"/resolve", "ops", map[string]string{"comment": "partner resent it"}); status != 200 {
		t.Errorf("resolve: %d %s", status, b)
	}

	if status, _ := e.call("GET", "/api/v1/audit", "ops", nil); status != http.StatusForbidden {
		t.Errorf("operator reads the audit log: %d, want 403", status)
	}
	var audit []struct{ Actor, Role, Action, Target, Reason, Outcome string }
	e.get("/api/v1/audit", "boss", &audit)
	want := []string{
		"ops operator resolve " + rejected.ID + " partner resent it ok",
		"ops operator resolve " + rejected.ID + "  " + "invalid request: a comment saying what was done is required",
		"ops operator retry " + po850.ID + "  ok",
		"ops operator replay " + po850.ID + " ERP lost it ok",
		"watcher viewer replay " + po850.ID + " try denied",
		"ops operator run-poll globex/globex-ftp  ok",
		"watcher viewer run-poll globex/globex-ftp  denied",
	}
	var got []string
	for _, a := range audit {
		got = append(got, strings.Join([]string{a.Actor, a.Role, a.Action, a.Target, a.Reason, a.Outcome}, " "))
	}
	for _, w := range want {
		if !strings.Contains(strings.Join(got, "\n"), w) {
			t.Errorf("audit log lacks %q:\n%s", w, strings.Join(got, "\n"))
		}
	}

	// The cluster view: this one node, alive.
	var nodes []struct {
		ID, Addr string
		Alive    bool
	}
	e.get("/api/v1/nodes", "watcher", &nodes)
	if len(nodes) != 1 || !nodes[0].Alive || nodes[0].Addr != fmt.Sprintf("127.0.0.1:%d", e.httpPort) {
		t.Errorf("nodes: %+v", nodes)
	}

	// The counters moved as the run above says they must.
	status, b = e.call("GET", "/metrics", "", nil)
	if status != 200 {
		t.Fatalf("/metrics: %d", status)
	}
	for _, want := range []string{
		`edigw_files_received_total{channel="sftp",outcome="received",partner="retail"} 2`,
		`edigw_files_received_total{channel="sftp",outcome="received",partner="acme"} 1`,
		`edigw_documents_total{outcome="mapped",partner="retail",type="850"} 1`,
		`edigw_documents_total{outcome="rejected",partner="retail",type="850"} 1`,
		`edigw_documents_total{outcome="delivered",partner="retail",type="850"} 2`, // once, and again after the replay
		`edigw_documents_total{outcome="delivered",partner="acme",type="856"} 1`,
		`edigw_erp_requests_total{endpoint="purchase-orders",outcome="ok"} 2`,
		`edigw_sftp_logins_total{outcome="ok",partner="retail"} 1`,
		`edigw_sftp_logins_total{outcome="ok",partner="acme"} 1`,
		`edigw_poll_runs_total{partner="globex",poll="globex-ftp",status="failed"} 1`,
		`edigw_queue_depth{kind="document",state="done"} 3`,
		`edigw_queue_depth{kind="file",state="done"} 3`,
		`edigw_stage_seconds_count{stage="file"} 3`,
	} {
		if !bytes.Contains(b, []byte(want+"\n")) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", grepLines(b, "edigw_"))
	}
}

func grepLines(b []byte, prefix string) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
