package ops

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/edigw/edigw/edi"
	"github.com/edigw/edigw/partners"
	"github.com/edigw/edigw/spool"
)

// FileView is a file with everything recorded about it.
type FileView struct {
	File         spool.File
	Interchanges []spool.Interchange
	Documents    []spool.Document
	Events       []spool.Event
}

// File returns a file's record, interchanges, documents and timeline.
func (s *Service) File(ctx context.Context, id spool.ID) (FileView, error) {
	var v FileView
	var err error
	if v.File, err = s.Store.GetFile(ctx, id); err != nil {
		return v, err
	}
	if v.Interchanges, err = s.Store.ListInterchanges(ctx, id); err != nil {
		return v, err
	}
	if v.Documents, _, err = s.Store.ListDocuments(ctx, spool.DocumentFilter{FileID: id, Page: spool.Page{Limit: 1000, Ascending: true}}); err != nil {
		return v, err
	}
	v.Events, err = s.Store.Events(ctx, id)
	return v, err
}

// DocumentView is a document with its file, interchange (and the ack sent
// for it), the canonical JSON and its timeline.
type DocumentView struct {
	Document    spool.Document
	File        spool.File
	Interchange *spool.Interchange
	Mapped      json.RawMessage // nil until mapped
	ERPBody     string          // the ERP's last response body (first 64 KiB)
	Events      []spool.Event
}

// Document returns a document with its context.
func (s *Service) Document(ctx context.Context, id spool.ID) (DocumentView, error) {
	var v DocumentView
	var err error
	if v.Document, err = s.Store.GetDocument(ctx, id); err != nil {
		return v, err
	}
	if v.File, err = s.Store.GetFile(ctx, v.Document.FileID); err != nil {
		return v, err
	}
	if v.Document.InterchangeID != "" {
		ic, err := s.Store.GetInterchange(ctx, v.Document.InterchangeID)
		if err != nil {
			return v, err
		}
		v.Interchange = &ic
	}
	if !v.Document.Mapped.IsZero() {
		if v.Mapped, err = s.read(ctx, v.Document.Mapped, 16<<20); err != nil {
			return v, fmt.Errorf("mapped JSON: %w", err)
		}
	}
	switch r := v.Document.Response; {
	case r.Inline != nil:
		v.ERPBody = string(r.Inline)
	case !r.Body.IsZero():
		b, err := s.read(ctx, r.Body, 64<<10)
		if err != nil {
			return v, fmt.Errorf("ERP response: %w", err)
		}
		v.ERPBody = string(b)
	}
	v.Events, err = s.Store.Events(ctx, id)
	return v, err
}

// Raw returns a file's bytes.
func (s *Service) Raw(ctx context.Context, id spool.ID) (spool.File, io.ReadCloser, error) {
	f, err := s.Store.GetFile(ctx, id)
	if err != nil {
		return f, nil, err
	}
	r, err := s.Blobs.Open(ctx, f.Blob)
	return f, r, err
}

func (s *Service) read(ctx context.Context, ref spool.BlobRef, limit int64) ([]byte, error) {
	r, err := s.Blobs.Open(ctx, ref)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(io.LimitReader(r, limit))
}

// Segment is one line of the raw EDI view.
type Segment struct {
	N        int    // 1-based segment number in the file (what findings name)
	Tag      string // ISA, GS, ST, BEG, ...
	Elements []string
	Findings []Finding
}

// Finding is a validation finding, placed on its segment (and element).
type Finding struct {
	Level   string // interchange, group, set, segment, element
	Code    string // the X12 code (TA105, AK905, AK502, AK304, AK403 / IK...)
	Element int    // 1-based element position, 0 for the whole segment
	Text    string
}

// SegmentsView is a file's EDI, one segment per line, with the findings of
// a fresh validation (with the partner's guide) on the segments they name.
type SegmentsView struct {
	Segments  []Segment
	Unplaced  []Finding // findings that name no segment of the file
	Truncated bool      // only the first MaxSegments are shown
	Err       string    // why the file could not be read as X12, if so
}

// MaxSegments bounds the segments view.
const MaxSegments = 5000

// Segments reads a file as X12 for display.
func (s *Service) Segments(ctx context.Context, id spool.ID) (SegmentsView, error) {
	var v SegmentsView
	f, err := s.Store.GetFile(ctx, id)
	if err != nil {
		return v, err
	}
	raw, err := s.read(ctx, f.Blob, 64<<20)
	if err != nil {
		return v, err
	}
	rd := edi.NewReader(bytes.NewReader(raw))
	for n := 1; ; n++ {
		seg, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			v.Err = err.Error()
			break
		}
		if len(v.Segments) == MaxSegments {
			v.Truncated = true
			break
		}
		line := Segment{N: n, Tag: seg.TagString()}
		for i := 1; i <= seg.Len(); i++ {
			line.Elements = append(line.Elements, seg.Value(i))
		}
		v.Segments = append(v.Segments, line)
	}
	byN := map[int]int{}
	for i, sg := range v.Segments {
		byN[sg.N] = i
	}
	opt := edi.Options{}
	if p := s.Partners().ByID(f.Partner); p != nil {
		opt.Set = p.SpecSet
	}
	place := func(fs []edi.Finding) {
		for _, x := range fs {
			fv := Finding{Level: x.Level.String(), Code: x.Code, Element: x.Element, Text: x.String()}
			if i, ok := byN[x.Pos.Segment]; ok {
				v.Segments[i].Findings = append(v.Segments[i].Findings, fv)
			} else {
				v.Unplaced = append(v.Unplaced, fv)
			}
		}
	}
	opt.OnSet = func(_ *edi.Interchange, _ *edi.Group, st *edi.Set) { place(st.Findings) }
	opt.OnGroup = func(_ *edi.Interchange, g *edi.Group) { place(g.Findings) }
	opt.OnInterchange = func(ic *edi.Interchange) { place(ic.Findings) }
	if err := edi.Process(bytes.NewReader(raw), opt); err != nil && v.Err == "" {
		v.Err = err.Error()
	}
	return v, nil
}

// PartnerView is a partner's profile summary with the health of its
// channels.
type PartnerView struct {
	ID, Name, Status string
	Version          string // X12 version, "" for CSV-only partners
	ISA              string
	SFTPUsers        []string
	Outbound         string // outbox, or the push URL
	Documents        []string
	Polls            []PollView
}

// PollView is a poll with its last run.
type PollView struct {
	Partner, Name, Where, Schedule, Location string
	LastRun                                  *spool.PollRun
}

// Partners lists the partners with their polls' last runs.
func (s *Service) PartnerList(ctx context.Context) ([]PartnerView, error) {
	var out []PartnerView
	for _, p := range s.Partners().Partners() {
		v, err := s.partner(ctx, p)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Partner returns one partner; spool.ErrNotFound if it is not configured.
func (s *Service) Partner(ctx context.Context, id string) (PartnerView, error) {
	p := s.Partners().ByID(id)
	if p == nil {
		return PartnerView{}, fmt.Errorf("partner %s: %w", id, spool.ErrNotFound)
	}
	return s.partner(ctx, p)
}

func (s *Service) partner(ctx context.Context, p *partners.Partner) (PartnerView, error) {
	v := PartnerView{ID: p.ID, Name: p.Name, Status: string(p.Status), Outbound: string(p.Outbound.Channel)}
	if p.X12 != nil {
		v.Version, v.ISA = p.X12.Version, p.X12.ISA.String()
	}
	if p.Outbound.Push != nil {
		v.Outbound = p.Outbound.Push.URL.String()
	}
	for _, u := range p.Inbound.SFTP {
		v.SFTPUsers = append(v.SFTPUsers, u.User)
	}
	for _, d := range p.Documents {
		v.Documents = append(v.Documents, d.Name())
	}
	for _, pc := range p.Inbound.Polls {
		pv := PollView{Partner: p.ID, Name: pc.Name, Where: pc.URL.String(), Schedule: pc.Schedule, Location: pc.Location.String()}
		runs, err := s.Store.ListRuns(ctx, spool.RunFilter{Partner: p.ID, Poll: pc.Name, Limit: 1})
		if err != nil {
			return v, err
		}
		if len(runs) == 1 {
			pv.LastRun = &runs[0]
		}
		v.Polls = append(v.Polls, pv)
	}
	return v, nil
}

// Tree writes a file's parsed X12 as the JSON loop tree of `edigw x12
// parse` (docs/x12-json.md), validated with the partner's guide.
func (s *Service) Tree(ctx context.Context, id spool.ID, w io.Writer) error {
	f, rc, err := s.Raw(ctx, id)
	if err != nil {
		return err
	}
	defer rc.Close()
	jw := edi.NewJSONWriter(w)
	var opt edi.Options
	if p := s.Partners().ByID(f.Partner); p != nil {
		opt.Set = p.SpecSet
	}
	jw.Hook(&opt)
	perr := edi.Process(rc, opt)
	if err := jw.Close(); err != nil {
		return err
	}
	if perr != nil && errors.Is(perr, edi.ErrNotX12) {
		return fmt.Errorf("%w: %s is not X12: %v", ErrInvalid, f.Name, perr)
	}
	return nil
}
