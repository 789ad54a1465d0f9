package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium finds Debian's Chromium, installing it as root where apt-get is
// available; it fails in CI and skips elsewhere when there is none.
func chromium(t *testing.T) string {
	t.Helper()
	find := func() string {
		for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
		return ""
	}
	if p := find(); p != "" {
		return p
	}
	if _, err := exec.LookPath("apt-get"); err == nil && os.Geteuid() == 0 {
		install := func() ([]byte, error) {
			cmd := exec.Command("apt-get", "install", "-y", "-qq", "chromium")
			cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			return cmd.CombinedOutput()
		}
		if out, err := install(); err != nil {
			exec.Command("apt-get", "update", "-qq").Run()
			if out, err = install(); err != nil {
				t.Logf("apt-get install chromium: %v\n%s", err, out)
			}
		} else {
			t.Logf("installed chromium: %s", tail(string(out), 2))
		}
	}
	if p := find(); p != "" {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("chromium is required for the console tests (apt-get install -y chromium)")
	}
	t.Skip("chromium not installed")
	return ""
}

// TestConsole drives the operator console in headless Chromium: log in,
// find a message by PO number, read its segments, find the rejected one by
// ISA13 and see its error highlighted, replay it and see the replay in the
// timeline; a viewer is refused; a POST without the CSRF token is 403.
func TestConsole(t *testing.T) {
	exe := chromium(t)
	e := newEnv(t)
	po, _ := os.ReadFile("../mapping/testdata/po-in.edi")
	bad := bytes.ReplaceAll(bytes.ReplaceAll(po, []byte("000000101"), []byte("000000102")), []byte("BEG*00*SA*PO-4501"), []byte("BEG*00*XX*PO-4502"))
	badPath := filepath.Join(e.dir, "bad-850.edi")
	os.WriteFile(badPath, bad, 0o644)
	if out, err := e.sftp("retail", "cd inbox\nput ../mapping/testdata/po-in.edi\nput "+badPath+"\n"); err != nil {
		t.Fatalf("upload: %v\n%s", err, out)
	}
	e.waitDocs(1, 30*time.Second)
	var badID, badFile string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		var pg apiPage
		e.get("/api/v1/documents?isa13=000000102", "watcher", &pg)
		if len(pg.Items) == 1 && pg.Items[0].State == "done" {
			badID, badFile = pg.Items[0].ID, pg.Items[0].FileID
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the bad 850 did not end: %+v", pg.Items)
		}
	}

	dir := os.Getenv("EDIGW_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "edigw-console-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", e.httpPort)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.WindowSize(1400, 1000),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"), chromedp.Flag("no-proxy-server", true))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()

	n := 0
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			b, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			n++
			p := filepath.Join(dir, fmt.Sprintf("%02d-%s.png", n, name))
			t.Logf("screenshot %s", p)
			return os.WriteFile(p, b, 0o644)
		})
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			loc, _ := chromedp.Run(ctx, chromedp.Location())
			html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("main")))
			t.Fatalf("%s: %v (at %s)\n%s", what, err, loc, html)
		}
	}
	eval := func(js string) bool {
		t.Helper()
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return ok
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	login := func(name string) {
		t.Helper()
		do("log in as "+name,
			chromedp.WaitVisible(chromedp.CSS("#name")),
			chromedp.SendKeys(chromedp.CSS("#name"), name),
			chromedp.SendKeys(chromedp.CSS("#secret"), testTokens[name]),
			shot("login-"+name),
			chromedp.Click(chromedp.CSS("#login")),
			chromedp.WaitVisible(chromedp.CSS("#actor")))
	}
	// search fills one tracker field, submits, and waits for one result.
	search := func(field, value, want string) {
		t.Helper()
		do("search "+field+"="+value,
			chromedp.Navigate(base+"/messages"),
			chromedp.WaitVisible(chromedp.CSS("#filters")),
			chromedp.SendKeys(chromedp.CSS(`#filters input[name="`+field+`"]`), value),
			chromedp.Evaluate[chromedp.Void](`window.samePage = true`),
			chromedp.Click(chromedp.CSS("#search")),
			chromedp.Poll[chromedp.Void](fmt.Sprintf(`(() => { const r = document.querySelectorAll("#results table tr"); return r.length === 2 && r[1].textContent.includes(%q) && location.search.includes(%q) })()`,
				want, field+"="+value), chromedp.WithPollingTimeout(10*time.Second)))
		if !eval(`typeof htmx === "object" && window.samePage === true`) {
			t.Error("the results were not updated in place by htmx")
		}
	}
	begLine := `#segments .seg[data-tag="BEG"]`

	// An unauthenticated browser goes to the login page, and back after.
	do("open the tracker", chromedp.Navigate(base+"/messages"), chromedp.WaitVisible(chromedp.CSS("#name")))
	login("ops")
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); !strings.HasSuffix(loc, "/messages") {
		t.Errorf("after login: at %s, want /messages", loc)
	}
	do("dashboard", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#today")), shot("dashboard"))
	if s := text("#today"); !strings.Contains(s, "retail") || !strings.Contains(s, "done") {
		t.Errorf("dashboard's files by partner and state: %q", s)
	}

	// Find the good 850 by its PO number and open it.
	search("key", "PO-4501", "PO-4501")
	do("results", shot("search-po"), chromedp.Click(chromedp.CSS("#results table a")), chromedp.WaitVisible(chromedp.CSS("#segments")), shot("detail-good"))
	if s := text(begLine); !strings.Contains(s, "BEG") || !strings.Contains(s, "PO-4501") {
		t.Errorf("BEG line: %q", s)
	}
	if eval(`document.querySelectorAll("#segments .seg").length < 10 || document.querySelectorAll("#segments .finding").length > 0`) {
		t.Error("the good 850: fewer than 10 segment lines, or a finding")
	}
	if s := text("#header"); !strings.Contains(s, "000000101") || !strings.Contains(s, "PO-4501") || !strings.Contains(s, "retail") {
		t.Errorf("header: %q", s)
	}

	// Find the bad one by ISA13: BEG is flagged, BEG02 is the bad element.
	search("isa13", "000000102", "retail")
	do("open the bad 850", chromedp.Click(chromedp.CSS("#results table a")), chromedp.WaitVisible(chromedp.CSS("#segments")), shot("detail-bad"))
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); !strings.HasSuffix(loc, "/messages/"+badID) {
		t.Errorf("at %s, want the bad 850 %s", loc, badID)
	}
	if !eval(`document.querySelector('` + begLine + `').classList.contains("finding")`) {
		t.Error("the BEG line has no finding class")
	}
	if !eval(`(() => { const el = document.querySelector('` + begLine + ` .el[title="BEG02"]'); return el.classList.contains("bad-element") && el.textContent === "XX" })()`) {
		t.Error("BEG02 is not the bad element")
	}
	if eval(`document.querySelectorAll("#segments .bad-element").length !== 1`) {
		t.Error("want exactly one bad element")
	}
	if s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll('`+begLine+` .finding-text')].map(f => f.textContent).join("\n")`)); !strings.Contains(s, "AK403=7") {
		t.Errorf("finding text: %q, want AK403=7", s)
	}
	if s := text("#timeline"); !strings.Contains(s, "rejected") {
		t.Errorf("timeline does not show the rejection:\n%s", s)
	}

	// Replay it: the timeline shows the replay by ops.
	replayByOps := `[...document.querySelectorAll("#timeline tr.ev-replay")].some(r => r.querySelector(".actor").textContent === "ops")`
	if eval(replayByOps) {
		t.Fatal("a replay event before replaying")
	}
	do("replay",
		chromedp.SetValue(chromedp.CSS("#replay-to"), "archived"),
		chromedp.SendKeys(chromedp.CSS("#replay-reason"), "console test"),
		chromedp.Click(chromedp.CSS("#replay")),
		chromedp.WaitVisible(chromedp.CSS("#flash")),
		shot("replayed"))
	if !eval(replayByOps) {
		t.Errorf("no replay event by ops in the timeline:\n%s", text("#timeline"))
	}
	if s := text("#flash"); !strings.Contains(s, "Replayed from archived") {
		t.Errorf("flash: %q", s)
	}

	// A viewer may look but not replay: the page says so.
	do("log out", chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#name")))
	login("watcher")
	do("viewer replays", chromedp.Navigate(base+"/messages/"+badID), chromedp.WaitVisible(chromedp.CSS("#segments")),
		chromedp.Click(chromedp.CSS("#replay")), chromedp.WaitVisible(chromedp.CSS("#error")), shot("viewer-forbidden"))
	if s := text("#error"); !strings.Contains(s, "forbidden") {
		t.Errorf("viewer's replay: %q, want forbidden", s)
	}
	do("more pages",
		chromedp.Navigate(base+"/partners"), chromedp.WaitVisible(chromedp.CSS("#partners")), shot("partners"),
		chromedp.Navigate(base+"/schedules"), chromedp.WaitVisible(chromedp.CSS("#polls")), shot("schedules"),
		chromedp.Navigate(base+"/dead"), chromedp.WaitVisible(chromedp.CSS("h1")), shot("dead"))

	// Without a browser: the session needs its CSRF token for actions.
	consoleHTTP(t, base, badID, badFile)
}

func consoleHTTP(t *testing.T, base, id, fileID string) {
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	send := func(method, path string, form url.Values, hdr ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	loginAs := func(name, old string) string {
		t.Helper()
		var hdr []string
		if old != "" {
			hdr = []string{"Cookie", "edigw_console=" + old}
		}
		resp, body := send("POST", "/login", url.Values{"name": {name}, "secret": {testTokens[name]}}, hdr...)
		for _, c := range resp.Cookies() {
			if c.Name == "edigw_console" && c.HttpOnly && c.SameSite == http.SameSiteStrictMode {
				return c.Value
			}
		}
		t.Fatalf("login: %d, no HttpOnly SameSite=Strict session cookie %v\n%s", resp.StatusCode, resp.Cookies(), body)
		return ""
	}
	if resp, _ := send("GET", "/messages", nil); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
		t.Errorf("no session: %d %s, want a redirect to /login", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := send("POST", "/login", url.Values{"name": {"ops"}, "secret": {"wrong-secret-0123456789"}}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong secret: %d, want 401", resp.StatusCode)
	}
	sid := loginAs("ops", "")
	cookie := "edigw_console=" + sid
	resp, page := send("GET", "/messages/"+id, nil, "Cookie", cookie)
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if resp.StatusCode != 200 || m == nil {
		t.Fatalf("detail with the session: %d, CSRF token found: %v", resp.StatusCode, m != nil)
	}
	form := url.Values{"to": {"archived"}, "reason": {"no token"}}
	if resp, body := send("POST", "/messages/"+id+"/replay", form, "Cookie", cookie); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "CSRF") {
		t.Errorf("POST without the CSRF token: %d, want 403", resp.StatusCode)
	}
	form.Set("csrf", "x"+m[1])
	if resp, _ := send("POST", "/messages/"+id+"/replay", form, "Cookie", cookie); resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST with a wrong CSRF token: %d, want 403", resp.StatusCode)
	}
	form.Del("csrf")
	if resp, _ := send("POST", "/messages/"+id+"/replay", form, "Cookie", cookie, "X-CSRF-Token", m[1], "Sec-Fetch-Site", "cross-site"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST: %d, want 403", resp.StatusCode)
	}
	form.Set("csrf", m[1])
	if resp, _ := send("POST", "/messages/"+id+"/replay", form, "Cookie", cookie); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("POST with the CSRF token: %d, want 303", resp.StatusCode)
	}
	resp, _ = send("POST", "/schedules/globex/globex-ftp/run", url.Values{"csrf": {m[1]}}, "Cookie", cookie)
	if _, page := send("GET", "/schedules", nil, "Cookie", cookie); resp.StatusCode != http.StatusSeeOther || !strings.Contains(page, "of globex/globex-ftp: failed") {
		t.Errorf("run the (unreachable) globex poll now: %d, want 303 and the failed run shown", resp.StatusCode)
	}
	// A new login replaces the session id; the old one is gone.
	if sid2 := loginAs("ops", sid); sid2 == sid {
		t.Error("the session id did not change on login")
	}
	if resp, _ := send("GET", "/", nil, "Cookie", cookie); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("old session after a new login: %d, want a redirect to /login", resp.StatusCode)
	}
	// Basic auth, for scripts: no session, no CSRF token.
	req, _ := http.NewRequest("GET", base+"/messages?key=PO-4501", nil)
	req.SetBasicAuth("watcher", testTokens["watcher"])
	if resp, err := client.Do(req); err != nil || resp.StatusCode != 200 {
		t.Errorf("basic auth: %v %v", resp.StatusCode, err)
	}
	for path, want := range map[string]string{"/messages/" + fileID: "bad-850.edi", "/dead": "Dead letters", "/schedules": "globex-ftp", "/partners": "retail"} {
		req, _ := http.NewRequest("GET", base+path, nil)
		req.SetBasicAuth("watcher", testTokens["watcher"])
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("GET %s: %d, want 200 with %q", path, resp.StatusCode, want)
		}
	}
	// The state filter "rejected" finds the rejected set, which ended done once archived.
	req, _ = http.NewRequest("GET", base+"/messages?state=rejected", nil)
	req.SetBasicAuth("watcher", testTokens["watcher"])
	if resp, err := client.Do(req); err != nil {
		t.Fatal(err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), id) || strings.Contains(string(b), "PO-4501") {
			t.Errorf("tracker state=rejected: want the bad 850 %s and not the good one", id)
		}
	}
	if resp, _ := send("GET", "/messages/doc_nope", nil, "Cookie", "edigw_console="+loginAs("watcher", "")); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown id: %d, want 404", resp.StatusCode)
	}
	for path, want := range map[string]string{"/static/htmx.min.js": "javascript", "/static/console.css": "text/css", "/healthz": "text/plain"} {
		if resp, _ := send("GET", path, nil); resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), want) {
			t.Errorf("GET %s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
	req.SetBasicAuth("watcher", "nope")
	if resp, err := client.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong basic auth: %v %v, want 401", resp.StatusCode, err)
	}
}
