package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/edigw/edigw/gateway/ops"
	"github.com/edigw/edigw/spool"
)

// The JSON shapes of the API (docs/openapi.yaml). Times are RFC 3339 UTC.

type work struct {
	State         spool.State `json:"state"`
	RetryOf       spool.State `json:"retryOf,omitempty"`
	Attempts      int         `json:"attempts"`
	NextAttemptAt *time.Time  `json:"nextAttemptAt,omitempty"`
	LastError     string      `json:"lastError,omitempty"`
}

func workOf(w spool.Work) work {
	out := work{State: w.State, RetryOf: w.RetryOf, Attempts: w.Attempts, LastError: w.LastError}
	if w.State == spool.StateRetrying && !w.NextAttemptAt.IsZero() {
		t := w.NextAttemptAt
		out.NextAttemptAt = &t
	}
	return out
}

type fileJSON struct {
	ID          spool.ID        `json:"id"`
	Partner     string          `json:"partner"`
	Channel     string          `json:"channel"`
	Direction   string          `json:"direction"`
	Name        string          `json:"name"`
	RemotePath  string          `json:"remotePath,omitempty"`
	Size        int64           `json:"size"`
	SHA256      string          `json:"sha256"`
	ReceivedAt  time.Time       `json:"receivedAt"`
	DuplicateOf spool.ID        `json:"duplicateOf,omitempty"`
	Meta        json.RawMessage `json:"meta,omitempty"`
	work
}

func fileOf(f spool.File) fileJSON {
	return fileJSON{ID: f.ID, Partner: f.Partner, Channel: f.Channel, Direction: f.Direction, Name: f.Name, RemotePath: f.RemotePath,
		Size: f.Blob.Size, SHA256: f.Blob.SHA256, ReceivedAt: f.ReceivedAt, DuplicateOf: f.DuplicateOf, Meta: f.Meta, work: workOf(f.Work)}
}

type ackJSON struct {
	Kind    string     `json:"kind"`
	Status  string     `json:"status"`
	Control string     `json:"control"`
	At      *time.Time `json:"at,omitempty"`
}

type interchangeJSON struct {
	ID          spool.ID    `json:"id"`
	Seq         int         `json:"seq"`
	Control     string      `json:"isa13"`
	Sender      string      `json:"sender"`
	Receiver    string      `json:"receiver"`
	Version     string      `json:"version"`
	State       spool.State `json:"state"`
	DuplicateOf spool.ID    `json:"duplicateOf,omitempty"`
	Ack         *ackJSON    `json:"ack,omitempty"`
}

func interchangeOf(ic spool.Interchange) interchangeJSON {
	out := interchangeJSON{ID: ic.ID, Seq: ic.Seq, Control: ic.Control, Sender: ic.Sender, Receiver: ic.Receiver,
		Version: ic.Version, State: ic.State, DuplicateOf: ic.DuplicateOf}
	if ic.Ack.Kind != "" {
		at := ic.Ack.At
		out.Ack = &ackJSON{Kind: ic.Ack.Kind, Status: ic.Ack.Status, Control: ic.Ack.Control, At: &at}
	}
	return out
}

type documentJSON struct {
	ID             spool.ID  `json:"id"`
	FileID         spool.ID  `json:"fileId"`
	InterchangeID  spool.ID  `json:"interchangeId,omitempty"`
	Partner        string    `json:"partner"`
	Type           string    `json:"type"`
	GroupControl   string    `json:"gs06,omitempty"`
	SetControl     string    `json:"st02,omitempty"`
	BusinessKey    string    `json:"businessKey,omitempty"`
	IdempotencyKey string    `json:"idempotencyKey,omitempty"`
	ERPStatus      int       `json:"erpStatus,omitempty"`
	CreatedAt      time.Time `json:"createdAt"`
	work
}

func documentOf(d spool.Document) documentJSON {
	return documentJSON{ID: d.ID, FileID: d.FileID, InterchangeID: d.InterchangeID, Partner: d.Partner, Type: d.Type,
		GroupControl: d.GroupControl, SetControl: d.SetControl, BusinessKey: d.BusinessKey, IdempotencyKey: d.IdempotencyKey,
		ERPStatus: d.Response.Status, CreatedAt: d.CreatedAt, work: workOf(d.Work)}
}

type eventJSON struct {
	At      time.Time       `json:"at"`
	Kind    string          `json:"kind"`
	Actor   string          `json:"actor"`
	From    spool.State     `json:"from,omitempty"`
	To      spool.State     `json:"to,omitempty"`
	Message string          `json:"message,omitempty"`
	Detail  json.RawMessage `json:"detail,omitempty"`
}

func eventsOf(es []spool.Event) []eventJSON {
	out := make([]eventJSON, 0, len(es))
	for _, e := range es {
		out = append(out, eventJSON{At: e.At, Kind: string(e.Kind), Actor: e.Actor, From: e.From, To: e.To, Message: e.Message, Detail: e.Detail})
	}
	return out
}

type pageJSON[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next,omitempty"` // pass as ?cursor= for the next page
}

func (s *Server) listDocuments(w http.ResponseWriter, r *http.Request, _ ops.Actor) error {
	q := r.URL.Query()
	f := spool.DocumentFilter{Partner: q.Get("partner"), States: states(r, "state"), WasIn: states(r, "was"), Types: list(r, "type"),
		Direction: q.Get("direction"), InterchangeControl: q.Get("isa13"), GroupControl: q.Get("gs06"), SetControl: q.Get("st02"),
		Ref: q.Get("key")}
	var err error
	if f.Since, f.Until, f.Page, err = window(r); err != nil {
		return err
	}
	docs, next, err := s.ops.Store.ListDocuments(r.Context(), f)
	if err != nil {
		return err
	}
	out := pageJSON[documentJSON]{Items: []documentJSON{}, Next: next}
	for _, d := range docs {
		out.Items = append(out.Items, documentOf(d))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getDocument(w http.ResponseWriter, r *http.Request, _ ops.Actor) error {
	v, err := s.ops.Document(r.Context(), spool.ID(r.PathValue("id")))
	if err != nil {
		return err
	}
	out := struct {
		documentJSON
		File        fileJSON         `json:"file"`
		Interchange *interchangeJSON `json:"interchange,omitempty"`
		Mapped      json.RawMessage  `json:"mapped,omitempty"`
		ERPResponse *erpJSON         `json:"erpResponse,omitempty"`
		Events      []eventJSON      `json:"events"`
	}{documentJSON: documentOf(v.Document), File: fileOf(v.File), Mapped: v.Mapped, Events: eventsOf(v.Events)}
	if v.Interchange != nil {
		ic := interchangeOf(*v.Interchange)
		out.Interchange = &ic
	}
	if rs := v.Document.Response; rs.Status != 0 {
		out.ERPResponse = &erpJSON{Status: rs.Status, Body: v.ERPBody, At: rs.At}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

type erpJSON struct {
	Status int       `json:"status"`
	Body   string    `json:"body,omitempty"`
	At     time.Time `json:"at"`
}

func (s *Server) getMapped(w http.ResponseWriter, r *http.Request, _ ops.Actor) error {
	v, err := s.ops.Document(r.Context(), spool.ID(r.PathValue("id")))
	if err != nil {
		return err
	}
	if v.Mapped == nil {
		return fmt.Errorf("document %s has no canonical JSON yet (%s): %w", v.Document.ID, v.Document.State, spool.ErrNotFound)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(v.Mapped)
	return nil
}

func (s *Server) listFiles(w http.ResponseWriter, r *http.Request, _ ops.Actor) error {
	q := r.URL.Query()
	f := spool.FileFilter{Partner: q.Get("partner"), Channel: q.Get("channel"), States: states(r, "state")}
	var err error
	if f.Since, f.Until, f.Page, err = window(r); err != nil {
		return err
	}
	files, next, err := s.ops.Store.ListFiles(r.Context(), f)
	if err != nil {
		return err
	}
	out := pageJSON[fileJSON]{Items: []fileJSON{}, Next: next}
	for _, f := range files {
		out.Items = append(out.Items, fileOf(f))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getFile(w http.ResponseWriter, r *http.Request, _ ops.Actor) error {
	v, err := s.ops.File(r.Context(), spool.ID(r.PathValue("id")))
	if err != nil {
		return err
	}
	out := struct {
		fileJSON
		Interchanges []interchangeJSON `json:"interchanges"`
		Documents    []documentJSON    `json:"documents"`
		Events       []eventJSON       `json:"events"`
	}{fileJSON: fileOf(v.File), Interchanges: []interchangeJSON{}, Documents: []documentJSON{}, Events: eventsOf(v.Events)}
	for _, ic := range v.Interchanges {
		out.Interchanges = append(out.Interchanges, interchangeOf(ic))
	}
	for _, d := range v.Documents {
		out.Documents = append(out.Documents, documentOf(d))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getRaw(w http.ResponseWriter, r *http.Request, _ ops.Actor) error {
	f, rc, err := s.ops.Raw(r.Context(), spool.ID(r.PathValue("id")))
	if err != nil {
		return err
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", f.Name))
	w.Header().Set("Content-Length", fmt.Sprint(f.Blob.Size))
	_, err = io.Copy(w, rc)
	if err != nil {
		s.log.Warn("api: raw download interrupted", "message_id", f.ID, "err", err)
	}
	return nil
}

func (s *Server) getSegments(w http.ResponseWriter, r *http.Request, _ ops.Actor) error {
	v, err := s.ops.Segments(r.Context(), spool.ID(r.PathValue("id")))
	if err != nil {
		return err
	}
	type findingJSON struct {
		Level   string `json:"level"`
		Code    string `json:"code"`
		Element int    `json:"element,omitempty"`
		Text    string `json:"text"`
	}
	type segJSON struct {
		N        int           `json:"n"`
		Tag      string        `json:"tag"`
		Elements []string      `json:"elements"`
		Findings []findingJSON `json:"findings,omitempty"`
	}
	conv := func(fs []ops.Finding) []findingJSON {
		var out []findingJSON
		for _, f := range fs {
			out = append(out, findingJSON(f))
		}
		return out
	}
	out := struct {
		Segments  []segJSON     `json:"segments"`
		Unplaced  []findingJSON `json:"unplacedFindings,omitempty"`
		Truncated bool          `json:"truncated,omitempty"`
		Error     string        `json:"error,omitempty"`
	}{Segments: []segJSON{}, Unplaced: conv(v.Unplaced), Truncated: v.Truncated, Error: v.Err}
	for _, sg := range v.Segments {
		out.Segments = append(out.Segments, segJSON{N: sg.N, Tag: sg.Tag, Elements: sg.Elements, Findings: conv(sg.Findings)})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) replay(w http.ResponseWriter, r *http.Request, a ops.Actor) error {
	var body struct {
		To     spool.State `json:"to"`
		Reason string      `json:"reason"`
	}
	if err := readJSON(r, &body); err != nil {
		return err
	}
	id := spool.ID(r.PathValue("id"))
	if err := s.ops.Replay(r.Context(), a, id, body.To, body.Reason); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"id": string(id), "replayedFrom": string(body.To)})
	return nil
}

func (s *Server) retry(w http.ResponseWriter, r *http.Request, a ops.Actor) error {
	var body struct {
		Reason string `json:"reason"`
	}
	if err := readJSON(r, &body); err != nil {
		return err
	}
	msg, err := s.ops.Retry(r.Context(), a, spool.ID(r.PathValue("id")), body.Reason)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"id": r.PathValue("id"), "result": msg})
	return nil
}

func (s *Server) resolve(w http.ResponseWriter, r *http.Request, a ops.Actor) error {
	var body struct {
		Comment string `json:"comment"`
	}
	if err := readJSON(r, &body); err != nil {
		return err
	}
	if err := s.ops.Resolve(r.Context(), a, spool.ID(r.PathValue("id")), body.Comment); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"id": r.PathValue("id"), "result": "resolved"})
	return nil
}

type runJSON struct {
	ID        int64           `json:"id"`
	Partner   string          `json:"partner"`
	Poll      string          `json:"poll"`
	Node      string          `json:"node"`
	Trigger   string          `json:"trigger"`
	Status    spool.RunStatus `json:"status"`
	StartedAt time.Time       `json:"startedAt"`
	EndedAt   *time.Time      `json:"endedAt,omitempty"`
	Seen      int             `json:"seen"`
	Fetched   int             `json:"fetched"`
	Skipped   int             `json:"skipped"`
	Failed    int             `json:"failed"`
	Errors    []string        `json:"errors,omitempty"`
}

func runOf(r spool.PollRun) runJSON {
	out := runJSON{ID: r.ID, Partner: r.Partner, Poll: r.Poll, Node: r.Owner, Trigger: r.Trigger, Status: r.Status,
		StartedAt: r.StartedAt, Seen: r.Seen, Fetched: r.Fetched, Skipped: r.Skipped, Failed: r.Failed, Errors: r.Errors}
	if !r.EndedAt.IsZero() {
		e := r.EndedAt
		out.EndedAt = &e
	}
	return out
}

type pollJSON struct {
	Partner  string   `json:"partner"`
	Name     string   `json:"name"`
	Where    string   `json:"where"`
	Schedule string   `json:"schedule"`
	TimeZone string   `json:"timeZone"`
	LastRun  *runJSON `json:"lastRun,omitempty"`
}

func pollOf(p ops.PollView) pollJSON {
	out := pollJSON{Partner: p.Partner, Name: p.Name, Where: p.Where, Schedule: p.Schedule, TimeZone: p.Location}
	if p.LastRun != nil {
		r := runOf(*p.LastRun)
		out.LastRun = &r
	}
	return out
}

type partnerJSON struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Status    string     `json:"status"`
	Version   string     `json:"x12Version,omitempty"`
	ISA       string     `json:"isa,omitempty"`
	SFTPUsers []string   `json:"sftpUsers"`
	Outbound  string     `json:"outbound"`
	Documents []string   `json:"documents"`
	Polls     []pollJSON `json:"polls"`
}

func partnerOf(p ops.PartnerView) partnerJSON {
	out := partnerJSON{ID: p.ID, Name: p.Name, Status: p.Status, Version: p.Version, ISA: p.ISA, SFTPUsers: p.SFTPUsers,
		Outbound: p.Outbound, Documents: p.Documents, Polls: []pollJSON{}}
	if out.SFTPUsers == nil {
		out.SFTPUsers = []string{}
	}
	if out.Documents == nil {
		out.Documents = []string{}
	}
	for _, pv := range p.Polls {
		out.Polls = append(out.Polls, pollOf(pv))
	}
	return out
}

func (s *Server) listPartners(w http.ResponseWriter, r *http.Request, _ ops.Actor) error {
	ps, err := s.ops.PartnerList(r.Context())
	if err != nil {
		return err
	}
	out := []partnerJSON{}
	for _, p := range ps {
		out = append(out, partnerOf(p))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getPartner(w http.ResponseWriter, r *http.Request, _ ops.Actor) error {
	p, err := s.ops.Partner(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, partnerOf(p))
	return nil
}

func (s *Server) listSchedules(w http.ResponseWriter, r *http.Request, _ ops.Actor) error {
	ps, err := s.ops.PartnerList(r.Context())
	if err != nil {
		return err
	}
	out := []pollJSON{}
	for _, p := range ps {
		for _, pv := range p.Polls {
			out = append(out, pollOf(pv))
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) listRuns(w http.ResponseWriter, r *http.Request, _ ops.Actor) error {
	p, err := page(r)
	if err != nil {
		return err
	}
	runs, err := s.ops.Store.ListRuns(r.Context(), spool.RunFilter{Partner: r.PathValue("partner"), Poll: r.PathValue("poll"), Limit: p.Limit})
	if err != nil {
		return err
	}
	out := []runJSON{}
	for _, run := range runs {
		out = append(out, runOf(run))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) runPoll(w http.ResponseWriter, r *http.Request, a ops.Actor) error {
	run, err := s.ops.RunPollNow(r.Context(), a, r.PathValue("partner"), r.PathValue("poll"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, runOf(run))
	return nil
}

func (s *Server) sendPO(w http.ResponseWriter, r *http.Request, a ops.Actor) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil {
		return err
	}
	if !json.Valid(body) {
		return fmt.Errorf("%w: the body is not JSON (a canonical purchase order)", ops.ErrInvalid)
	}
	f, err := s.ops.SendPurchaseOrder(r.Context(), a, r.PathValue("id"), body)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, fileOf(f))
	return nil
}

func (s *Server) listAudit(w http.ResponseWriter, r *http.Request, a ops.Actor) error {
	p, err := page(r)
	if err != nil {
		return err
	}
	es, err := s.ops.Audit(r.Context(), a, spool.AuditFilter{Actor: r.URL.Query().Get("actor"), Target: r.URL.Query().Get("target"), Limit: p.Limit})
	if err != nil {
		return err
	}
	type auditJSON struct {
		ID      int64           `json:"id"`
		At      time.Time       `json:"at"`
		Actor   string          `json:"actor"`
		Role    string          `json:"role"`
		Action  string          `json:"action"`
		Target  string          `json:"target"`
		Reason  string          `json:"reason,omitempty"`
		Outcome string          `json:"outcome"`
		Detail  json.RawMessage `json:"detail,omitempty"`
	}
	out := []auditJSON{}
	for _, e := range es {
		out = append(out, auditJSON(e))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) listPOs(w http.ResponseWriter, r *http.Request, _ ops.Actor) error {
	p, err := page(r)
	if err != nil {
		return err
	}
	pos, err := s.ops.PurchaseOrders(r.Context(), ops.POFilter{Partner: r.URL.Query().Get("partner"), Limit: p.Limit})
	if err != nil {
		return err
	}
	type poJSON struct {
		documentJSON
		PONumber  string         `json:"poNumber"`
		File      fileJSON       `json:"file"`
		ISA13     string         `json:"isa13"`
		POStatus  string         `json:"poStatus"` // queued, sent, accepted, partial, rejected, overdue
		Ack       *ackJSON       `json:"ack,omitempty"`
		AckDueBy  *time.Time     `json:"ackDueBy,omitempty"`
		Responses []documentJSON `json:"responses"`
	}
	status := r.URL.Query().Get("status")
	out := []poJSON{}
	for _, po := range pos {
		if status != "" && po.Status != status {
			continue
		}
		v := poJSON{documentJSON: documentOf(po.Document), PONumber: po.Document.BusinessKey, File: fileOf(po.File), ISA13: po.ISA13,
			POStatus: po.Status, Responses: []documentJSON{}}
		if po.Ack.Kind != "" {
			at := po.Ack.At
			v.Ack = &ackJSON{Kind: po.Ack.Kind, Status: po.Ack.Status, Control: po.Ack.Control, At: &at}
		}
		if !po.AckDueBy.IsZero() {
			d := po.AckDueBy
			v.AckDueBy = &d
		}
		for _, d := range po.Responses {
			v.Responses = append(v.Responses, documentOf(d))
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) listNodes(w http.ResponseWriter, r *http.Request, _ ops.Actor) error {
	nodes, err := s.ops.Cluster(r.Context())
	if err != nil {
		return err
	}
	type nodeJSON struct {
		ID        string    `json:"id"`
		Addr      string    `json:"addr"`
		Version   string    `json:"version"`
		StartedAt time.Time `json:"startedAt"`
		SeenAt    time.Time `json:"seenAt"`
		Alive     bool      `json:"alive"`
		InFlight  int       `json:"inFlight"`
		Polls     []runJSON `json:"polls"` // runs in progress on the node
	}
	out := []nodeJSON{}
	for _, n := range nodes {
		v := nodeJSON{ID: n.ID, Addr: n.Addr, Version: n.Version, StartedAt: n.StartedAt, SeenAt: n.SeenAt, Alive: n.Alive,
			InFlight: n.InFlight, Polls: []runJSON{}}
		for _, run := range n.Polls {
			v.Polls = append(v.Polls, runOf(run))
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getTree(w http.ResponseWriter, r *http.Request, _ ops.Actor) error {
	var buf bytes.Buffer // a parse error must still be able to answer with its status
	if err := s.ops.Tree(r.Context(), spool.ID(r.PathValue("id")), &buf); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	_, err := buf.WriteTo(w)
	return err
}
