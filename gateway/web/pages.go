package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/edigw/edigw/gateway/api"
	"github.com/edigw/edigw/gateway/ops"
	"github.com/edigw/edigw/spool"
)

var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.Local().Format("2006-01-02 15:04:05")
	},
}

// Dashboard

type dashRow struct {
	Partner string
	Counts  []int
	Total   int
}

func (c *Console) dashboard(w http.ResponseWriter, r *http.Request, q *req) error {
	ctx, now := r.Context(), time.Now()
	y, m, d := now.Date()
	day := time.Date(y, m, d, 0, 0, 0, 0, now.Location())
	files, _, err := c.svc.Store.ListFiles(ctx, spool.FileFilter{Since: day, Page: spool.Page{Limit: 1000}})
	if err != nil {
		return err
	}
	data := struct {
		Day             time.Time
		States          []spool.State
		Rows            []dashRow
		Files, LastHour int
		Capped          bool
		Failures        []spool.Document
		Overdue         []ops.PurchaseOrderView
	}{Day: day, Files: len(files), Capped: len(files) == 1000}
	counts := map[string]map[spool.State]int{}
	seen := map[spool.State]bool{}
	for _, f := range files {
		if counts[f.Partner] == nil {
			counts[f.Partner] = map[spool.State]int{}
		}
		counts[f.Partner][f.State]++
		seen[f.State] = true
		if now.Sub(f.ReceivedAt) <= time.Hour {
			data.LastHour++
		}
	}
	for _, s := range spool.States() {
		if seen[s] {
			data.States = append(data.States, s)
		}
	}
	for p, byState := range counts {
		row := dashRow{Partner: p}
		for _, s := range data.States {
			row.Counts = append(row.Counts, byState[s])
			row.Total += byState[s]
		}
		data.Rows = append(data.Rows, row)
	}
	sort.Slice(data.Rows, func(i, j int) bool { return data.Rows[i].Partner < data.Rows[j].Partner })
	failing := []spool.State{spool.StateHeld, spool.StateDead, spool.StateRejected, spool.StateRetrying}
	if data.Failures, _, err = c.svc.Store.ListDocuments(ctx, spool.DocumentFilter{States: failing, Page: spool.Page{Limit: 50}}); err != nil {
		return err
	}
	pos, err := c.svc.PurchaseOrders(ctx, ops.POFilter{Limit: 500, NoResponses: true})
	if err != nil {
		return err
	}
	for _, po := range pos {
		if po.Status == ops.POOverdue {
			data.Overdue = append(data.Overdue, po)
		}
	}
	v := q.view("Dashboard", "dashboard", data)
	v.Flash = c.takeFlash(q)
	c.render(w, http.StatusOK, "dashboard", "layout", v)
	return nil
}

// Message tracker

type trackerForm struct {
	Partner, Direction, Type, State, Since, Until, ISA13, GS06, ST02, Key string
}

func (c *Console) messages(w http.ResponseWriter, r *http.Request, q *req) error {
	ctx, qs := r.Context(), r.URL.Query()
	form := trackerForm{Partner: qs.Get("partner"), Direction: qs.Get("direction"), Type: strings.TrimSpace(qs.Get("type")), State: qs.Get("state"),
		Since: qs.Get("since"), Until: qs.Get("until"), ISA13: strings.TrimSpace(qs.Get("isa13")), GS06: strings.TrimSpace(qs.Get("gs06")),
		ST02: strings.TrimSpace(qs.Get("st02")), Key: strings.TrimSpace(qs.Get("key"))}
	f := spool.DocumentFilter{Partner: form.Partner, Direction: form.Direction, InterchangeControl: form.ISA13, GroupControl: form.GS06,
		SetControl: form.ST02, Ref: form.Key, Page: spool.Page{Limit: 50, After: qs.Get("cursor")}}
	if form.Type != "" {
		f.Types = []string{form.Type}
	}
	switch form.State {
	case "":
	case string(spool.StateRejected):
		// Rejected sets are archived and end done: "rejected" means were rejected.
		f.WasIn = []spool.State{spool.StateRejected}
	default:
		f.States = []spool.State{spool.State(form.State)}
	}
	var ferr error
	date := func(s string) time.Time {
		if s == "" {
			return time.Time{}
		}
		t, err := time.ParseInLocation("2006-01-02", s, time.Local)
		if err != nil && ferr == nil {
			ferr = fmt.Errorf("%w: %q is not a date (YYYY-MM-DD)", ops.ErrInvalid, s)
		}
		return t
	}
	f.Since = date(form.Since)
	if u := date(form.Until); !u.IsZero() {
		f.Until = u.AddDate(0, 0, 1) // the until day is included
	}
	data := struct {
		Form     trackerForm
		Partners []string
		States   []spool.State
		Docs     []spool.Document
		Next     string
	}{Form: form, States: spool.States()}
	v := q.view("Messages", "messages", &data)
	if ferr != nil {
		v.Error = ferr.Error()
	} else {
		docs, next, err := c.svc.Store.ListDocuments(ctx, f)
		if err != nil && api.StatusOf(err) >= 500 {
			return err
		} else if err != nil {
			v.Error = err.Error()
		}
		data.Docs = docs
		if next != "" {
			nq := url.Values{}
			for k, vs := range qs {
				if k != "cursor" && vs[0] != "" {
					nq.Set(k, vs[0])
				}
			}
			nq.Set("cursor", next)
			data.Next = "/messages?" + nq.Encode()
		}
	}
	if r.Header.Get("HX-Request") == "true" && r.Header.Get("HX-Target") == "results" && r.Header.Get("HX-History-Restore-Request") != "true" {
		c.render(w, http.StatusOK, "messages", "results", v)
		return nil
	}
	ps, err := c.svc.PartnerList(ctx)
	if err != nil {
		return err
	}
	for _, p := range ps {
		data.Partners = append(data.Partners, p.ID)
	}
	c.render(w, http.StatusOK, "messages", "layout", v)
	return nil
}

// Message detail

type segLine struct {
	N        int
	Tag      string
	Elems    []segElem
	Findings []ops.Finding
}

type segElem struct {
	Pos, Value string
	Bad        bool
}

type detailData struct {
	ID           spool.ID
	Kind         spool.Kind
	Doc          *ops.DocumentView
	File         *ops.FileView
	FileRec      spool.File
	Work         spool.Work
	Lines        []segLine
	Unplaced     []ops.Finding
	Truncated    bool
	SegErr       string
	Events       []spool.Event
	Mapped       string
	ReplayStates []spool.State
	DefaultTo    spool.State
}

func (c *Console) load(ctx context.Context, id spool.ID) (*detailData, error) {
	d := &detailData{ID: id, Kind: id.Kind()}
	switch d.Kind {
	case spool.KindDocument:
		v, err := c.svc.Document(ctx, id)
		if err != nil {
			return nil, err
		}
		d.Doc, d.FileRec, d.Work, d.Events = &v, v.File, v.Document.Work, v.Events
		if len(v.Mapped) > 0 {
			var b bytes.Buffer
			if json.Indent(&b, v.Mapped, "", "  ") == nil {
				d.Mapped = b.String()
			} else {
				d.Mapped = string(v.Mapped)
			}
		}
		// the states a document worker picks up
		d.ReplayStates, d.DefaultTo = []spool.State{spool.StateMapped, spool.StateDelivered, spool.StateArchived}, spool.StateMapped
	case spool.KindFile:
		v, err := c.svc.File(ctx, id)
		if err != nil {
			return nil, err
		}
		d.File, d.FileRec, d.Work, d.Events = &v, v.File, v.File.Work, v.Events
		d.ReplayStates, d.DefaultTo = []spool.State{spool.StateReceived, spool.StateAcked, spool.StateDelivered, spool.StateArchived}, spool.StateReceived
	default:
		return nil, fmt.Errorf("%q is not a document (doc_…) or file (file_…) id: %w", id, spool.ErrNotFound)
	}
	sv, err := c.svc.Segments(ctx, d.FileRec.ID)
	if err != nil {
		return nil, err
	}
	d.Unplaced, d.Truncated, d.SegErr = sv.Unplaced, sv.Truncated, sv.Err
	for _, s := range sv.Segments {
		line := segLine{N: s.N, Tag: s.Tag, Findings: s.Findings}
		for i, e := range s.Elements {
			el := segElem{Pos: fmt.Sprintf("%s%02d", s.Tag, i+1), Value: e}
			el.Bad = slices.ContainsFunc(s.Findings, func(f ops.Finding) bool { return f.Element == i+1 })
			line.Elems = append(line.Elems, el)
		}
		d.Lines = append(d.Lines, line)
	}
	return d, nil
}

func (c *Console) detail(w http.ResponseWriter, r *http.Request, q *req) error {
	d, err := c.load(r.Context(), spool.ID(r.PathValue("id")))
	if err != nil {
		return err
	}
	v := q.view(string(d.ID), "messages", d)
	v.Flash = c.takeFlash(q)
	c.render(w, http.StatusOK, "detail", "layout", v)
	return nil
}

// messageAction runs replay, retry or resolve, then shows the detail again:
// by redirect when it worked, with the error on the page when not.
func (c *Console) messageAction(action string) handler {
	return func(w http.ResponseWriter, r *http.Request, q *req) error {
		ctx, id := r.Context(), spool.ID(r.PathValue("id"))
		var msg string
		var err error
		switch action {
		case "replay":
			to := spool.State(r.PostFormValue("to"))
			if err = c.svc.Replay(ctx, q.actor, id, to, strings.TrimSpace(r.PostFormValue("reason"))); err == nil {
				msg = fmt.Sprintf("Replayed from %s.", to)
			}
		case "retry":
			msg, err = c.svc.Retry(ctx, q.actor, id, strings.TrimSpace(r.PostFormValue("reason")))
		case "resolve":
			if err = c.svc.Resolve(ctx, q.actor, id, strings.TrimSpace(r.PostFormValue("comment"))); err == nil {
				msg = "Resolved."
			}
		}
		if err != nil {
			status := c.logged(r, q, err)
			d, lerr := c.load(ctx, id)
			if lerr != nil {
				return lerr
			}
			v := q.view(string(id), "messages", d)
			v.Error = fmt.Sprintf("%s: %v", action, err)
			c.render(w, status, "detail", "layout", v)
			return nil
		}
		c.setFlash(q, msg)
		http.Redirect(w, r, "/messages/"+url.PathEscape(string(id)), http.StatusSeeOther)
		return nil
	}
}

// Partners, schedules, dead letters

func (c *Console) partners(w http.ResponseWriter, r *http.Request, q *req) error {
	ps, err := c.svc.PartnerList(r.Context())
	if err != nil {
		return err
	}
	c.render(w, http.StatusOK, "partners", "layout", q.view("Partners", "partners", ps))
	return nil
}

func (c *Console) cluster(w http.ResponseWriter, r *http.Request, q *req) error {
	nodes, err := c.svc.Cluster(r.Context())
	if err != nil {
		return err
	}
	c.render(w, http.StatusOK, "cluster", "layout", q.view("Cluster", "cluster", nodes))
	return nil
}

func (c *Console) schedulesView(ctx context.Context, q *req) (*view, error) {
	ps, err := c.svc.PartnerList(ctx)
	if err != nil {
		return nil, err
	}
	data := struct {
		Polls []ops.PollView
		Runs  []spool.PollRun
	}{}
	for _, p := range ps {
		data.Polls = append(data.Polls, p.Polls...)
	}
	if data.Runs, err = c.svc.Store.ListRuns(ctx, spool.RunFilter{Limit: 30}); err != nil {
		return nil, err
	}
	return q.view("Schedules", "schedules", data), nil
}

func (c *Console) schedules(w http.ResponseWriter, r *http.Request, q *req) error {
	v, err := c.schedulesView(r.Context(), q)
	if err != nil {
		return err
	}
	v.Flash = c.takeFlash(q)
	c.render(w, http.StatusOK, "schedules", "layout", v)
	return nil
}

func (c *Console) runPoll(w http.ResponseWriter, r *http.Request, q *req) error {
	partner, poll := r.PathValue("partner"), r.PathValue("poll")
	run, err := c.svc.RunPollNow(r.Context(), q.actor, partner, poll)
	if err != nil {
		status := c.logged(r, q, err)
		v, verr := c.schedulesView(r.Context(), q)
		if verr != nil {
			return verr
		}
		v.Error = fmt.Sprintf("run %s/%s: %v", partner, poll, err)
		c.render(w, status, "schedules", "layout", v)
		return nil
	}
	msg := fmt.Sprintf("Run %d of %s/%s: %s, %d fetched, %d failed.", run.ID, partner, poll, run.Status, run.Fetched, run.Failed)
	if len(run.Errors) > 0 {
		msg += " " + run.Errors[0]
	}
	c.setFlash(q, msg)
	http.Redirect(w, r, "/schedules", http.StatusSeeOther)
	return nil
}

func (c *Console) dead(w http.ResponseWriter, r *http.Request, q *req) error {
	ctx := r.Context()
	states := []spool.State{spool.StateDead, spool.StateHeld}
	docs, _, err := c.svc.Store.ListDocuments(ctx, spool.DocumentFilter{States: states, Page: spool.Page{Limit: 200}})
	if err != nil {
		return err
	}
	files, _, err := c.svc.Store.ListFiles(ctx, spool.FileFilter{States: states, Page: spool.Page{Limit: 200}})
	if err != nil {
		return err
	}
	data := struct {
		Docs  []spool.Document
		Files []spool.File
	}{docs, files}
	c.render(w, http.StatusOK, "dead", "layout", q.view("Dead letters", "dead", data))
	return nil
}
