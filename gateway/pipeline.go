package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/edigw/edigw/edi"
	"github.com/edigw/edigw/gateway/archive"
	"github.com/edigw/edigw/gateway/erp"
	"github.com/edigw/edigw/gateway/webhooks"
	"github.com/edigw/edigw/mapping"
	"github.com/edigw/edigw/partners"
	"github.com/edigw/edigw/spool"
)

// The pipeline, per DESIGN.md. Each stage runs on an item leased to this
// node (claimed from the spool, or created leased and handed over in
// memory), does its work and makes one transition; every stage is
// idempotent, so a worker that dies halfway leaves an expired lease and the
// stage simply runs again.
//
//	file      received → (parse, map, acknowledge, record interchanges with their
//	                       documents and acks) → acked → (archive raw + acks + JSON) → archived → done
//	document  mapped → (POST to the ERP) → delivered → (archive JSON, unless done) → archived → done
//	          parsed sets the X12 validator rejected → rejected → done
//	          sets without a mapping, or whose mapping fails → held (with the reason)
//
// The file stage records each interchange with its documents and ack in
// one write, archives the raw file, the acks and the documents' JSON
// together, then records acked, archived and done in one write
// (spool.Then). It hands the documents, created leased to this node, to
// the document workers in memory (handoff.go), telling them the JSON is
// archived: their stage then records delivered, with the ERP's response,
// archived and done in one write. When the archive fails, the item stops at
// acked (delivered) and the archive stage retries it.

// fileStage parses, maps and acknowledges one received file.
func (g *Gateway) fileStage(ctx context.Context, f *spool.File) error {
	log := g.log.With("message_id", f.ID, "partner", f.Partner, "file", f.Name)
	p := g.partners().ByID(f.Partner)
	if p == nil {
		return g.store.Transition(ctx, f.ID, spool.StateReceived, spool.StateHeld, g.owner(),
			spool.WithReason(fmt.Sprintf("partner %q is not configured (any more)", f.Partner)))
	}
	// One reader for both the sniffing and the parsing.
	blob, err := g.blobs.Open(ctx, f.Blob)
	if err != nil {
		return err
	}
	defer blob.Close()
	// A buffer the file's size, up to 64 KB (most files are a few KB):
	// enough to sniff its first 512 bytes.
	r := bufio.NewReaderSize(blob, int(max(512, min(f.Blob.Size, 64<<10))))
	head, err := r.Peek(512)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	run := &fileRun{}
	defer g.handDocuments(run) // on every path: they are leased to this node
	switch {
	case looksX12(head):
		err = g.parseX12(ctx, log, p, f, r, run)
	case p.CSVDocument(f.Name) != nil:
		err = g.parseCSV(ctx, log, p, f, p.CSVDocument(f.Name), r)
	default:
		log.Warn("file is neither X12 nor a CSV feed of the partner")
		return g.store.Transition(ctx, f.ID, spool.StateReceived, spool.StateRejected, g.owner(),
			spool.WithReason(fmt.Sprintf("%s: not X12 (no ISA segment) and no CSV feed of partner %s matches the name", f.Name, p.ID)))
	}
	if err != nil {
		return err
	}
	// The raw file, its acks and its documents' JSON are archived in this
	// stage too, together (one fsync per folder with a directory archive),
	// saving a claim and a commit; when the archive is failing they are left
	// to the archive stages, which retry with backoff.
	if err := g.archiveNow(ctx, func() error { return g.archiveFileWith(ctx, f, run.recorded, run.docs) }); err != nil {
		log.Warn("archive failed; the archive stage retries it", "err", err)
		return g.store.Transition(ctx, f.ID, spool.StateReceived, spool.StateAcked, g.owner())
	}
	run.archived = true
	g.handDocuments(run)
	return g.store.Transition(ctx, f.ID, spool.StateReceived, spool.StateAcked, g.owner(), spool.Then(spool.StateArchived, spool.StateDone))
}

// fileRun is what a file stage recorded.
type fileRun struct {
	recorded []spool.Interchange // with their acks
	docs     []spool.Document    // the documents it created or found
	handed   []bool              // per doc: a handoff place is reserved for it
	mapped   [][]byte            // per doc: its JSON, as stored
	archived bool                // the documents' JSON is archived
}

// handDocuments gives the documents recorded leased to this node to its
// document workers (once), telling them whether the JSON is archived.
func (g *Gateway) handDocuments(run *fileRun) {
	for i, d := range run.docs {
		if !run.handed[i] {
			continue
		}
		run.handed[i] = false
		// Only a document this stage created is ours to run; a re-run of
		// the stage finds the ones of the first run, which are handled.
		if d.Work.LeaseOwner == g.id && d.UpdatedAt.Equal(d.CreatedAt) {
			g.docs.put(handed{Item: spool.Item{Kind: spool.KindDocument, Document: &d}, archived: run.archived && !d.Mapped.IsZero(), mapped: run.mapped[i]})
		} else {
			g.docs.cancel()
		}
	}
}

// archiveNow runs archive unless the archive failed in the last minute (an
// S3 outage must not slow down parsing and acknowledging: the archive
// stages catch up), and remembers a failure.
func (g *Gateway) archiveNow(ctx context.Context, archive func() error) error {
	if last := g.archiveFailed.Load(); last != 0 && time.Since(time.Unix(0, last)) < time.Minute {
		return errors.New("the archive failed less than a minute ago")
	}
	err := archive()
	if err != nil {
		g.archiveFailed.Store(time.Now().UnixNano())
	}
	return err
}

func looksX12(b []byte) bool {
	b = bytes.TrimPrefix(b, []byte("\xEF\xBB\xBF"))
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) >= 4 && string(b[:3]) == "ISA"
}

// setResult is what happened to one transaction set while its interchange
// was being read (the interchange's duplicate check comes at its end).
type setResult struct {
	seq         int
	id          string
	group, set  string
	state       spool.State
	reason      string
	mapped      []byte
	businessKey string
	refs        []string // PO numbers the document refers to
	idempotency string
	warnings    []string
	ack         *functionalAck // a partner's 997/999 to one of our groups
	isa13       string
	acked       *spool.Document // our document that ack answers, once found
}

// parseX12 reads every interchange of the file, records it (a re-sent ISA13
// is a duplicate), records and maps its sets, and writes its acks; run
// collects what it recorded.
func (g *Gateway) parseX12(ctx context.Context, log *slog.Logger, p *partners.Partner, f *spool.File, r *bufio.Reader, run *fileRun) error {
	var (
		icSeq, setSeq int
		pending       []setResult
		failure       error
	)
	opt := edi.Options{Tree: true, Set: p.SpecSet,
		OnSet: func(ic *edi.Interchange, grp *edi.Group, s *edi.Set) {
			pending = append(pending, g.mapSet(log, p, f, ic, grp, s, setSeq))
			setSeq++
		},
		OnInterchange: func(ic *edi.Interchange) {
			if failure == nil {
				failure = g.recordInterchange(ctx, log, p, f, ic, icSeq, pending, run)
			}
			icSeq++
			pending = pending[:0]
		},
	}
	if err := edi.Process(r, opt); err != nil && icSeq == 0 {
		// Nothing readable at all: the file is rejected (no ack is possible).
		return g.store.Transition(ctx, f.ID, spool.StateReceived, spool.StateRejected, g.owner(), spool.WithReason(err.Error()))
	} else if err != nil {
		g.note(ctx, f.ID, "error", "data after the last interchange: "+err.Error())
	}
	return failure
}

// idempotencyKey is stable for a document across retries and replays: the
// partner and the control numbers that identify it.
func idempotencyKey(partner string, ic *edi.Interchange, grp *edi.Group, s *edi.Set) string {
	return fmt.Sprintf("%s:%s-%s:%s:%s:%s", partner, ic.SenderQualifier, ic.SenderID, ic.Control, grp.Control, s.Control)
}

// mapSet maps one accepted set, or says why it stops.
func (g *Gateway) mapSet(log *slog.Logger, p *partners.Partner, f *spool.File, ic *edi.Interchange, grp *edi.Group, s *edi.Set, seq int) setResult {
	res := setResult{seq: seq, id: s.ID, group: grp.Control, set: s.Control,
		idempotency: idempotencyKey(p.ID, ic, grp, s)}
	switch {
	case ic.Rejected() || s.Status == "R" || grp.Status() == "R":
		res.state = spool.StateRejected
		res.reason = rejection(ic, grp, s)
		return res
	case grp.FunctionalID == "FA":
		// The partner's 997/999 to something we sent: matched to our
		// group when the document is recorded.
		res.state = spool.StateDone
		res.reason = "functional acknowledgement received"
		if fa, ok := readFunctionalAck(s); ok {
			res.ack, res.isa13 = &fa, ic.Control
		}
		if g.cfg.ERP.AckStatusEndpoint == "" {
			return res
		}
		// The ERP is told what the partner said, as a canonical document.
		doc := ackStatusDocument(s, f.ReceivedAt)
		if err := mapping.ValidateDocument(ackStatusSchema, doc); err != nil {
			res.state, res.reason = spool.StateHeld, "functional-ack status: "+err.Error()
			return res
		}
		b, err := mapping.Marshal(doc)
		if err != nil {
			res.state, res.reason = spool.StateHeld, "functional-ack status: "+err.Error()
			return res
		}
		res.state, res.mapped, res.reason = spool.StateMapped, b, ""
		return res
	}
	doc := p.X12Document(s.ID, partners.DirectionInbound)
	if doc == nil || doc.Map == nil {
		res.state = spool.StateHeld
		res.reason = fmt.Sprintf("partner %s has no inbound mapping for transaction set %s; add it to documents: in %s and replay", p.ID, s.ID, p.File)
		return res
	}
	out, warns, err := doc.Map.MapX12(s.Tree, mapping.Env{FileName: f.Name, Partner: p.ID})
	res.warnings = warns
	if err != nil {
		res.state = spool.StateHeld
		res.reason = "mapping failed: " + err.Error()
		return res
	}
	b, err := mapping.Marshal(out)
	if err != nil {
		res.state, res.reason = spool.StateHeld, "mapping output is not JSON: "+err.Error()
		return res
	}
	res.state, res.mapped, res.businessKey, res.refs = spool.StateMapped, b, businessKey(out), poNumbers(out.Map(), nil)
	return res
}

// poNumbers collects every "poNumber" in a canonical document (a ship
// notice names one per order), so a search by PO number finds it.
func poNumbers(v any, out []string) []string {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && k == "poNumber" && s != "" && !slices.Contains(out, s) {
				out = append(out, s)
			} else {
				out = poNumbers(e, out)
			}
		}
	case []any:
		for _, e := range x {
			out = poNumbers(e, out)
		}
	case []map[string]any:
		for _, e := range x {
			out = poNumbers(e, out)
		}
	}
	return out
}

// businessKey is the document's number as people search for it.
func businessKey(doc mapping.Document) string {
	for _, k := range []string{"invoiceNumber", "asnNumber", "poNumber", "ackNumber"} {
		if v, ok := doc.Get(k).(string); ok && v != "" {
			return v
		}
	}
	return ""
}

func rejection(ic *edi.Interchange, grp *edi.Group, s *edi.Set) string {
	var parts []string
	for _, f := range ic.Findings {
		parts = append(parts, f.String())
	}
	for _, f := range grp.Findings {
		parts = append(parts, f.String())
	}
	for _, f := range s.Findings {
		parts = append(parts, f.String())
		if len(parts) >= 10 {
			parts = append(parts, "...")
			break
		}
	}
	if len(parts) == 0 {
		parts = append(parts, "functional group "+grp.Control+" is not supported")
	}
	return strings.Join(parts, "; ")
}

// recordInterchange records one interchange, unless it is a duplicate with
// its documents and acknowledgement, in one write; then it writes the ack
// to the partner's outbox. The documents go to run, to be handed to this
// node's workers once archived.
//
// A re-sent interchange is found first, read-only: it gets no 997/999 (so
// it takes no ack control number, and the partner sees no gap in our
// ISA13s) and its sets are not stored as documents.
func (g *Gateway) recordInterchange(ctx context.Context, log *slog.Logger, p *partners.Partner, f *spool.File, ic *edi.Interchange, seq int, sets []setResult, run *fileRun) error {
	var dup spool.ID
	if !ic.Rejected() {
		var err error
		if dup, err = g.store.DuplicateInterchange(ctx, f.ID, seq, ic.Control, p.Acks.DuplicateWindow); err != nil {
			return fmt.Errorf("interchange %s: %w", ic.Control, err)
		}
	}
	ni := spool.NewInterchange{
		FileID: f.ID, Seq: seq, Control: ic.Control, Sender: ic.SenderQualifier + ":" + ic.SenderID,
		Receiver: ic.ReceiverQualifier + ":" + ic.ReceiverID, Version: ic.Version, Rejected: ic.Rejected(),
		DedupeWindow: p.Acks.DuplicateWindow,
	}
	if dup == "" {
		var err error
		if ni.Ack, err = g.makeAck(ctx, p, ic, &ni.Inline); err != nil {
			return fmt.Errorf("interchange %s: ack: %w", ic.Control, err)
		}
	}
	handed := make([]bool, len(sets))
	cancel := func() {
		for i := range handed {
			if handed[i] {
				g.docs.cancel()
				handed[i] = false
			}
		}
	}
	for i := range sets {
		if dup != "" {
			break // the interchange it duplicates has them
		}
		nd, err := g.newDocument(ctx, log, f, &sets[i], &ni.Inline)
		if err != nil {
			cancel()
			return err
		}
		if (nd.State == spool.StateMapped || nd.State == spool.StateRejected) && g.docs.reserve() {
			nd.Lease, handed[i] = g.lease(), true
		}
		ni.Documents = append(ni.Documents, nd)
	}
	rec, docs, err := g.store.AddInterchange(ctx, ni)
	if err != nil {
		cancel()
		return fmt.Errorf("interchange %s: %w", ic.Control, err)
	}
	if rec.State == spool.StateDuplicate {
		cancel()
		log.Warn("duplicate interchange", "isa13", ic.Control, "original", rec.DuplicateOf)
		if (ic.AckRequested && p.Acks.TA1 != partners.TA1Never && p.Acks.TA1 != partners.TA1OnError) || p.Acks.TA1 == partners.TA1Always {
			rec, err = g.writeTA1Duplicate(ctx, p, rec, ic)
		}
		run.recorded = append(run.recorded, rec)
		return err
	}
	run.recorded = append(run.recorded, rec)
	for i, d := range docs {
		if s := &sets[i]; s.acked != nil {
			if err := g.recordAck(ctx, p, s.isa13, *s.ack, *s.acked); err != nil {
				log.Warn("functional ack not recorded", "isa13", s.isa13, "err", err)
				s.warnings = append(s.warnings, "functional ack not recorded on "+string(s.acked.ID)+": "+err.Error())
			}
		}
		g.documentRecorded(ctx, log, f, d, sets[i])
		if !handed[i] && (d.State == spool.StateMapped || d.State == spool.StateRejected) {
			defer g.wakeWorkers()
		}
	}
	run.docs, run.handed = append(run.docs, docs...), append(run.handed, handed...)
	for i := range docs {
		run.mapped = append(run.mapped, sets[i].mapped)
	}
	if rec.Ack.Kind == "" {
		return nil
	}
	return g.deliverAck(ctx, p, rec.Ack)
}

// newDocument is the record of one set's outcome; its canonical JSON is
// durable before the record that points at it, or committed with it (see
// putSmall). A partner's 997/999 is matched to our document first
// (s.acked), so the status document carries the PO number.
func (g *Gateway) newDocument(ctx context.Context, log *slog.Logger, f *spool.File, s *setResult, inline *[][]byte) (spool.NewDocument, error) {
	if s.ack != nil {
		if p := g.partners().ByID(f.Partner); p != nil {
			d, err := g.ackedDocument(ctx, p, *s.ack)
			if err != nil {
				log.Warn("functional ack not matched", "isa13", s.isa13, "err", err)
				s.warnings = append(s.warnings, err.Error())
			} else {
				s.acked = &d
			}
			s.businessKey = d.BusinessKey
		}
	}
	nd := spool.NewDocument{FileID: f.ID, Seq: s.seq, Type: s.id, GroupControl: s.group, SetControl: s.set,
		IdempotencyKey: s.idempotency, State: s.state, Reason: s.reason, Actor: g.id, BusinessKey: s.businessKey}
	if s.state == spool.StateMapped {
		ref, err := g.putSmall(ctx, s.mapped, inline)
		if err != nil {
			return nd, fmt.Errorf("set %s %s: %w", s.id, s.set, err)
		}
		nd.Mapped, nd.Refs = ref, s.refs
	}
	return nd, nil
}

// documentRecorded reports a recorded document: metrics, webhooks, the
// mapping's warnings as notes.
func (g *Gateway) documentRecorded(ctx context.Context, log *slog.Logger, f *spool.File, d spool.Document, s setResult) {
	g.metrics.Documents.WithLabelValues(f.Partner, s.id, string(s.state)).Inc()
	if s.state == spool.StateRejected || s.state == spool.StateHeld {
		g.docFailed(d, s.state, s.reason)
	}
	for _, w := range s.warnings {
		g.note(ctx, d.ID, "note", w)
	}
	if s.state == spool.StateHeld {
		log.Warn("document held", "document_id", d.ID, "set", s.id, "reason", s.reason)
	}
}

// parseCSV maps a CSV feed file as one document.
func (g *Gateway) parseCSV(ctx context.Context, log *slog.Logger, p *partners.Partner, f *spool.File, doc *partners.Document, r io.Reader) error {
	res := setResult{id: doc.Feed, idempotency: fmt.Sprintf("%s:csv:%s:%s", p.ID, doc.Feed, f.Blob.SHA256)}
	out, warns, err := doc.Map.MapCSV(r, mapping.Env{FileName: f.Name, Partner: p.ID})
	res.warnings = warns
	switch {
	case err != nil:
		res.state, res.reason = spool.StateHeld, "mapping failed: "+err.Error()
	default:
		res.mapped, _ = mapping.Marshal(out)
		res.state, res.businessKey = spool.StateMapped, f.Name
	}
	nd, err := g.newDocument(ctx, log, f, &res, nil)
	if err != nil {
		return err
	}
	d, err := g.store.AddDocument(ctx, nd)
	if err != nil {
		return fmt.Errorf("feed %s: %w", doc.Feed, err)
	}
	g.documentRecorded(ctx, log, f, d, res)
	g.wakeWorkers()
	return nil
}

// makeAck writes the interchange's TA1/997/999 (none if the partner wants
// none), to be stored with the interchange (see putSmall). A re-run of the
// stage makes another one, which the spool discards in favour of the first:
// the partner only ever gets the first.
func (g *Gateway) makeAck(ctx context.Context, p *partners.Partner, ic *edi.Interchange, inline *[][]byte) (spool.Ack, error) {
	if p.X12 == nil {
		return spool.Ack{}, nil
	}
	var buf bytes.Buffer
	opt := edi.AckOptions{
		Control:    func() (int64, error) { return g.controls.next(ctx, p.ID, "ack") },
		Delimiters: &p.X12.Delimiters, Functional: string(p.Acks.Functional), TA1: string(p.Acks.TA1),
	}
	if p.X12.Newline {
		opt.EOL = "\n"
	}
	plan := opt.Plan(ic)
	if plan.Empty() {
		return spool.Ack{}, nil
	}
	if _, err := edi.WriteAck(&buf, ic, opt); err != nil {
		return spool.Ack{}, err
	}
	kind, status := ackKind(plan, opt)
	if ic.Rejected() {
		status = "R"
	}
	ref, err := g.putSmall(ctx, buf.Bytes(), inline)
	if err != nil {
		return spool.Ack{}, err
	}
	return spool.Ack{Kind: kind, Status: status, Control: controlOf(buf.Bytes()), Blob: ref, At: time.Now()}, nil
}

// putSmall stores b for a record about to be written: a blob of at most
// spool.InlineMax goes to *inline, to be committed with the record (no file
// and no fsync of its own); a larger one, or any when inline is nil, is Put
// in the blob store now.
func (g *Gateway) putSmall(ctx context.Context, b []byte, inline *[][]byte) (spool.BlobRef, error) {
	if inline != nil && len(b) <= spool.InlineMax {
		*inline = append(*inline, b)
		return g.blobs.Keep(b), nil
	}
	return spool.PutBytes(ctx, g.blobs, b)
}

func ackKind(plan edi.AckPlan, opt edi.AckOptions) (kind, status string) {
	kinds := []string{}
	if plan.TA1 {
		kinds = append(kinds, "TA1")
	}
	for _, grp := range plan.Groups {
		k := "997"
		if opt.Functional == "999" || opt.Functional == "" && grp.Family == "005010" {
			k = "999"
		}
		if len(kinds) == 0 || kinds[len(kinds)-1] != k {
			kinds = append(kinds, k)
		}
		if status == "" || grp.Status() != "A" {
			status = grp.Status()
		}
	}
	if status == "" {
		status = "A"
	}
	return strings.Join(kinds, "+"), status
}

// controlOf reads ISA13 back from an interchange we wrote.
func controlOf(b []byte) string {
	if len(b) >= 99 {
		return string(b[90:99])
	}
	return ""
}

// writeTA1Duplicate answers a re-sent interchange with TA1 025; it returns
// the interchange with that ack.
func (g *Gateway) writeTA1Duplicate(ctx context.Context, p *partners.Partner, rec spool.Interchange, ic *edi.Interchange) (spool.Interchange, error) {
	if rec.Ack.Kind != "" {
		return rec, g.deliverAck(ctx, p, rec.Ack)
	}
	dup := *ic
	dup.Findings = []edi.Finding{{Level: edi.LevelInterchange, Code: edi.TA1Duplicate, Msg: "duplicate interchange control number"}}
	dup.Groups = nil
	var buf bytes.Buffer
	opt := edi.AckOptions{Control: func() (int64, error) { return g.controls.next(ctx, p.ID, "ack") }, TA1: "always"}
	if p.X12 != nil {
		opt.Delimiters = &p.X12.Delimiters
	}
	if _, err := edi.WriteAck(&buf, &dup, opt); err != nil {
		return rec, err
	}
	ref, err := spool.PutBytes(ctx, g.blobs, buf.Bytes())
	if err != nil {
		return rec, err
	}
	ack := spool.Ack{Kind: "TA1", Status: "R", Control: controlOf(buf.Bytes()), Blob: ref, At: time.Now()}
	if err := g.store.SetInterchangeAck(ctx, rec.ID, ack); err != nil {
		return rec, err
	}
	rec.Ack = ack
	return rec, g.deliverAck(ctx, p, ack)
}

// deliverAck puts a stored ack where the partner collects it.
func (g *Gateway) deliverAck(ctx context.Context, p *partners.Partner, ack spool.Ack) error {
	return g.deliverToPartner(ctx, p, partnerFileName(p, ack.Kind, ack.Control, ack.At), ack.Blob)
}

// chain moves a claimed item through several states in one stage. Each
// transition releases the lease, so the first one is made as the lease's
// owner and keeps the item out of other workers' claims (due after a lease
// period) until the stage is finished; the following ones act without it.
// A worker dying halfway leaves the item due again after a lease: every
// stage being idempotent, it simply runs again.
type chain struct {
	g      *Gateway
	id     spool.ID
	leased bool
}

func (g *Gateway) chain(id spool.ID) *chain { return &chain{g: g, id: id, leased: true} }

func (c *chain) who() spool.Option {
	if c.leased {
		return c.g.owner()
	}
	return spool.WithActor(c.g.id)
}

// step makes an intermediate transition: the item stays ours for a lease.
func (c *chain) step(ctx context.Context, from, to spool.State, opts ...spool.Option) error {
	err := c.g.store.Transition(ctx, c.id, from, to, append(opts, c.who(), spool.WithNextAttempt(time.Now().Add(c.g.cfg.Workers.Lease)))...)
	c.leased = false
	return err
}

// end makes the stage's last transition (or schedules a retry).
func (c *chain) end(ctx context.Context, from, to spool.State, opts ...spool.Option) error {
	return c.g.store.Transition(ctx, c.id, from, to, append(opts, c.who())...)
}

func (c *chain) retry(ctx context.Context, err error, at time.Time) error {
	return c.g.store.Retry(ctx, c.id, err, at, c.who())
}

// fileArchiveStage archives the raw file and its acks (when the file stage
// could not).
func (g *Gateway) fileArchiveStage(ctx context.Context, f *spool.File) error {
	if err := g.archiveFile(ctx, f); err != nil {
		return err
	}
	c := g.chain(f.ID)
	return c.end(ctx, spool.StateAcked, spool.StateArchived, spool.Then(spool.StateDone))
}

// archiveFile archives the raw file and its acks.
func (g *Gateway) archiveFile(ctx context.Context, f *spool.File) error {
	ics, err := g.store.ListInterchanges(ctx, f.ID)
	if err != nil {
		return err
	}
	return g.archiveFileWith(ctx, f, ics, nil)
}

// archiveFileWith archives, together, the raw file, the acks of its
// interchanges ics and the JSON of its mapped documents docs.
func (g *Gateway) archiveFileWith(ctx context.Context, f *spool.File, ics []spool.Interchange, docs []spool.Document) error {
	objs := []archive.Object{g.archiveObject(ctx, archive.Key("", f.Partner, f.ReceivedAt, string(f.ID), "raw-"+f.Name), f.Blob, "")}
	for _, ic := range ics {
		if ic.Ack.Blob.IsZero() {
			continue
		}
		name := fmt.Sprintf("ack-%d-%s-%s.x12", ic.Seq, strings.ReplaceAll(ic.Ack.Kind, "+", "-"), ic.Ack.Control)
		objs = append(objs, g.archiveObject(ctx, archive.Key("", f.Partner, f.ReceivedAt, string(f.ID), name), ic.Ack.Blob, "application/edi-x12"))
	}
	for _, d := range docs {
		if !d.Mapped.IsZero() {
			objs = append(objs, g.archiveObject(ctx, documentKey(&d), d.Mapped, "application/json"))
		}
	}
	defer func() {
		for _, o := range objs {
			o.Body.(io.Closer).Close()
		}
	}()
	err := archive.PutAll(ctx, g.archive, objs)
	g.metrics.ArchivePuts.WithLabelValues(outcome(err)).Add(float64(len(objs)))
	return err
}

func (g *Gateway) archiveBlob(ctx context.Context, key string, ref spool.BlobRef, contentType string) error {
	o := g.archiveObject(ctx, key, ref, contentType)
	defer o.Body.(io.Closer).Close()
	err := g.archive.Put(ctx, o)
	g.metrics.ArchivePuts.WithLabelValues(outcome(err)).Inc()
	return err
}

// archiveObject is the archive object of a blob; its Body is an
// io.Closer. A directory archive links the stored blob instead of copying
// it, and then never reads the body, which is only opened when read.
func (g *Gateway) archiveObject(ctx context.Context, key string, ref spool.BlobRef, contentType string) archive.Object {
	o := archive.Object{Key: key, Body: &blobReader{ctx: ctx, blobs: g.blobs, ref: ref}, Size: ref.Size, SHA256: ref.SHA256, ContentType: contentType}
	if p, ok := g.blobPath(ref); ok {
		o.LinkFrom = p
	}
	return o
}

// blobReader reads a spool blob, opened at the first Read.
type blobReader struct {
	ctx   context.Context
	blobs spool.Blobs
	ref   spool.BlobRef
	r     io.ReadCloser
	err   error
}

func (b *blobReader) Read(p []byte) (int, error) {
	if b.r == nil && b.err == nil {
		b.r, b.err = b.blobs.Open(b.ctx, b.ref)
	}
	if b.err != nil {
		return 0, b.err
	}
	return b.r.Read(p)
}

func (b *blobReader) Close() error {
	if b.r == nil {
		return nil
	}
	return b.r.Close()
}

// docFailed tells webhook subscribers a document stopped: rejected (bad
// EDI), held (no mapping, mapping failed) or dead (the ERP refused it or
// retries ran out).
func (g *Gateway) docFailed(d spool.Document, state spool.State, reason string) {
	g.hooks.Emit(webhooks.DocumentFailed, string(d.ID), map[string]any{"partner": d.Partner, "type": d.Type, "state": state,
		"reason": reason, "businessKey": d.BusinessKey, "fileId": d.FileID})
}

func outcome(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

// erpOutcome names a delivery result for the metrics.
func erpOutcome(res erp.Result) string {
	switch res.Outcome {
	case erp.Delivered:
		return "ok"
	case erp.Retry:
		return "retry"
	}
	return "refused"
}

// documentStage delivers a mapped document to the ERP and archives its
// JSON, unless the file stage did (h.archived).
func (g *Gateway) documentStage(ctx context.Context, h handed) error {
	d := h.Document
	log := g.log.With("message_id", d.ID, "partner", d.Partner, "type", d.Type, "idempotency_key", d.IdempotencyKey)
	stage := d.Work.Stage()
	c := g.chain(d.ID)
	if stage == spool.StateMapped {
		p := g.partners().ByID(d.Partner)
		if p == nil {
			return c.end(ctx, stage, spool.StateHeld, spool.WithReason("partner "+d.Partner+" is not configured"))
		}
		endpoint := g.cfg.ERP.AckStatusEndpoint // a functional-ack status
		if d.Type != "997" && d.Type != "999" {
			doc := p.X12Document(d.Type, partners.DirectionInbound)
			if doc == nil {
				doc = csvFeed(p, d.Type)
			}
			if doc == nil {
				return c.end(ctx, stage, spool.StateHeld, spool.WithReason("no document "+d.Type+" in partner "+p.ID))
			}
			endpoint = doc.ERP
		}
		body := h.mapped // the JSON the file stage stored, when it handed the document over
		if body == nil {
			var err error
			if body, err = g.readBlob(ctx, d.Mapped); err != nil {
				return err
			}
		}
		res := g.erp.Deliver(ctx, endpoint, erp.Delivery{Body: body, IdempotencyKey: d.IdempotencyKey, CorrelationID: string(d.ID), DocumentType: d.Type})
		resp := spool.Response{Status: res.Status, At: time.Now()}
		switch {
		case len(res.Body) == 0:
		case len(res.Body) <= spool.MaxInlineResponse:
			// Kept in the record, committed with the delivery: no file to
			// write and fsync per document.
			resp.Inline = res.Body
		default:
			resp.Body, _ = spool.PutBytes(ctx, g.blobs, res.Body)
		}
		if res.Attempted && res.Outcome != erp.Delivered { // a delivery records it with its transition
			if err := g.store.SetDocumentResult(ctx, d.ID, resp); err != nil {
				return err
			}
		}
		g.metrics.ERPRequests.WithLabelValues(endpoint, erpOutcome(res)).Inc()
		switch res.Outcome {
		case erp.Delivered:
			g.metrics.Documents.WithLabelValues(d.Partner, d.Type, "delivered").Inc()
			g.hooks.Emit(webhooks.DocumentDelivered, string(d.ID), map[string]any{"partner": d.Partner, "type": d.Type,
				"businessKey": d.BusinessKey, "idempotencyKey": d.IdempotencyKey, "erpStatus": res.Status, "fileId": d.FileID})
			log.Info("delivered to the ERP", "endpoint", endpoint, "status", res.Status, "replayed", res.Replayed)
			// Archived now, delivered, archived and done are one write.
			// Otherwise the delivery is recorded and archiving retried
			// (the ERP's Idempotency-Key covers a crash in between).
			var err error
			if !h.archived {
				err = g.archiveNow(ctx, func() error { return g.archiveDocument(ctx, d) })
			}
			if err == nil {
				return c.end(ctx, stage, spool.StateDelivered, spool.WithResponse(resp), spool.Then(spool.StateArchived, spool.StateDone))
			}
			if err := c.step(ctx, stage, spool.StateDelivered, spool.WithResponse(resp)); err != nil {
				return err
			}
			wait, _ := g.backoff.Next(d.Work.Attempts+1, 0)
			log.Warn("archive failed, will retry", "err", err, "in", wait)
			return c.retry(ctx, fmt.Errorf("archive: %w", err), time.Now().Add(wait))
		case erp.Retry:
			wait, ok := g.backoff.Next(d.Work.Attempts+1, res.RetryAfter)
			if !ok {
				log.Error("ERP delivery failed for the last time", "err", res.Err)
				g.metrics.Documents.WithLabelValues(d.Partner, d.Type, "dead").Inc()
				g.docFailed(*d, spool.StateDead, fmt.Sprint(res.Err))
				return c.end(ctx, stage, spool.StateDead, spool.WithReason(fmt.Sprintf("gave up after %d attempts: %v", d.Work.Attempts+1, res.Err)))
			}
			log.Warn("ERP delivery will be retried", "err", res.Err, "in", wait)
			return c.retry(ctx, res.Err, time.Now().Add(wait))
		default:
			log.Error("ERP refused the document", "status", res.Status, "err", res.Err)
			g.metrics.Documents.WithLabelValues(d.Partner, d.Type, "dead").Inc()
			g.docFailed(*d, spool.StateDead, fmt.Sprintf("ERP refused it (HTTP %d): %v", res.Status, res.Err))
			return c.end(ctx, stage, spool.StateDead,
				spool.WithReason(fmt.Sprintf("ERP refused it (HTTP %d): %v: %s", res.Status, res.Err, clip(res.Body))))
		}
	}
	switch stage {
	case spool.StateDelivered:
		if err := g.archiveDocument(ctx, d); err != nil {
			wait, _ := g.backoff.Next(d.Work.Attempts+1, 0)
			log.Warn("archive failed, will retry", "err", err, "in", wait)
			return c.retry(ctx, fmt.Errorf("archive: %w", err), time.Now().Add(wait))
		}
		return c.end(ctx, spool.StateDelivered, spool.StateArchived, spool.Then(spool.StateDone))
	case spool.StateArchived: // a worker died between archiving and done
		return c.end(ctx, spool.StateArchived, spool.StateDone)
	case spool.StateRejected:
		return c.end(ctx, spool.StateRejected, spool.StateDone)
	}
	return nil
}

// archiveDocument archives a document's mapped JSON.
func (g *Gateway) archiveDocument(ctx context.Context, d *spool.Document) error {
	return g.archiveBlob(ctx, documentKey(d), d.Mapped, "application/json")
}

// documentKey is where a document's JSON is archived: in its file's folder
// (of the day the document was recorded).
func documentKey(d *spool.Document) string {
	return archive.Key("", d.Partner, d.CreatedAt, string(d.FileID), fmt.Sprintf("doc-%d-%s.json", d.Seq, d.Type))
}

func (g *Gateway) readBlob(ctx context.Context, ref spool.BlobRef) ([]byte, error) {
	r, err := g.blobs.Open(ctx, ref)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func clip(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}

func (g *Gateway) note(ctx context.Context, id spool.ID, kind, text string) {
	k := spool.EventNote
	if kind == "error" {
		k = spool.EventError
	}
	if err := g.store.AddEvent(ctx, spool.Event{Subject: id, Kind: k, Actor: g.id, Message: text}); err != nil {
		g.log.Warn("event not recorded", "message_id", id, "err", err)
	}
}

// csvFeed returns the partner's CSV feed named name, or nil.
func csvFeed(p *partners.Partner, name string) *partners.Document {
	for i := range p.Documents {
		if d := &p.Documents[i]; d.Format == partners.FormatCSV && d.Feed == name {
			return d
		}
	}
	return nil
}
