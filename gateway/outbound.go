package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/edigw/edigw/edi"
	"github.com/edigw/edigw/gateway/archive"
	"github.com/edigw/edigw/gateway/ops"
	"github.com/edigw/edigw/gateway/transport"
	"github.com/edigw/edigw/gateway/webhooks"
	"github.com/edigw/edigw/partners"
	"github.com/edigw/edigw/spool"
)

// Outbound purchase orders: the ERP posts a canonical purchase order, we
// map it to the partner's 850 with the partner's next control numbers,
// spool it as an outbound file and deliver it like an ack (our outbox or
// the partner's server). The partner's 997/999 is matched to it by group
// control number; one that does not come within the partner's
// expect_ack_within is overdue.

// interchangeCounter hands out the ISA13 (and GS06) of everything we send a
// partner — acks and 850s share it, so no two interchanges to a partner
// carry the same control number.
const interchangeCounter = "ack"

// SendPurchaseOrder maps po (canonical purchase order JSON) to an 850 for
// the partner, spools it, and returns the outbound file; the workers
// deliver it.
func (g *Gateway) SendPurchaseOrder(ctx context.Context, partnerID string, po json.RawMessage, who string) (spool.File, error) {
	p := g.partners().ByID(partnerID)
	if p == nil {
		return spool.File{}, fmt.Errorf("partner %s: %w", partnerID, spool.ErrNotFound)
	}
	doc := p.X12Document("850", partners.DirectionOutbound)
	if p.X12 == nil || doc == nil || doc.Map == nil {
		return spool.File{}, fmt.Errorf("%w: partner %s has no outbound 850 mapping (documents: - x12: \"850\", direction: outbound in %s)", ops.ErrInvalid, p.ID, p.File)
	}
	var in map[string]any
	dec := json.NewDecoder(bytes.NewReader(po))
	dec.UseNumber()
	if err := dec.Decode(&in); err != nil {
		return spool.File{}, fmt.Errorf("%w: purchase order: %v", ops.ErrInvalid, err)
	}
	n, err := g.store.NextControl(ctx, p.ID, interchangeCounter)
	if err != nil {
		return spool.File{}, err
	}
	now := time.Now().UTC()
	ours := partners.ISAID{Qualifier: g.cfg.OurISA.Qualifier, ID: g.cfg.OurISA.ID}
	env := p.Envelope("PO", ours, partners.Controls{Interchange: n, Group: n, Set: "0001"}, now)
	var x12 bytes.Buffer
	if err := doc.Map.Outbound(in, env, &x12); err != nil {
		return spool.File{}, fmt.Errorf("%w: partner %s: %v", ops.ErrInvalid, p.ID, err)
	}
	ref, err := spool.PutBytes(ctx, g.blobs, x12.Bytes())
	if err != nil {
		return spool.File{}, err
	}
	control := fmt.Sprintf("%09d", n)
	name := partnerFileName(p, "850", control, now)
	f, err := g.store.AddFile(ctx, spool.NewFile{Partner: p.ID, Channel: "api", Direction: spool.Outbound, Name: name, Blob: ref,
		ReceivedAt: now, NoDedupe: true, Actor: "api:" + who})
	if err != nil {
		return spool.File{}, err
	}
	var meta json.RawMessage
	if p.Acks.ExpectAckWithin > 0 {
		meta, _ = json.Marshal(map[string]time.Time{"ackDueBy": now.Add(p.Acks.ExpectAckWithin)})
	}
	poNumber, _ := in["poNumber"].(string)
	_, _, err = g.store.AddInterchange(ctx, spool.NewInterchange{FileID: f.ID, Control: control,
		Sender: env.Interchange.SenderQualifier + ":" + env.Interchange.SenderID, Receiver: p.X12.ISA.Qualifier + ":" + p.X12.ISA.ID,
		Version: env.Interchange.Version, NoDedupe: true, Meta: meta,
		Documents: []spool.NewDocument{{Type: "850", GroupControl: fmt.Sprint(n), SetControl: "0001", BusinessKey: poNumber,
			State: spool.StateDone, Actor: "api:" + who}}})
	if err != nil {
		return spool.File{}, err
	}
	g.log.Info("purchase order queued", "message_id", f.ID, "partner", p.ID, "po", poNumber, "isa13", control, "by", who)
	g.wakeWorkers()
	return f, nil
}

// outboundStage delivers an outbound file to the partner and archives it;
// it resumes at the archive for a file delivered before a crash.
func (g *Gateway) outboundStage(ctx context.Context, f *spool.File) error {
	p := g.partners().ByID(f.Partner)
	if p == nil {
		return fmt.Errorf("partner %s is not configured", f.Partner)
	}
	c := g.chain(f.ID)
	if f.Work.Stage() == spool.StateReceived {
		if err := g.deliverToPartner(ctx, p, f.Name, f.Blob); err != nil {
			return err
		}
		g.log.Info("outbound file delivered", "message_id", f.ID, "partner", p.ID, "file", f.Name, "channel", p.Outbound.Channel)
		if err := c.step(ctx, spool.StateReceived, spool.StateDelivered); err != nil {
			return err
		}
	}
	if err := g.archiveBlob(ctx, archive.Key("", f.Partner, f.ReceivedAt, string(f.ID), "out-"+f.Name), f.Blob, "application/edi-x12"); err != nil {
		return err
	}
	return c.end(ctx, spool.StateDelivered, spool.StateArchived, spool.Then(spool.StateDone))
}

// deliverToPartner puts bytes into the partner's outbox (our SFTP
// listener) or on its server (temp name, then rename), unless they are
// there already. A failure fails the stage, which the spool retries and,
// after the last attempt, marks dead.
func (g *Gateway) deliverToPartner(ctx context.Context, p *partners.Partner, name string, ref spool.BlobRef) error {
	push := p.Outbound.Channel == partners.ChannelPush && p.Outbound.Push != nil
	if src, ok := g.blobPath(ref); ok && !push {
		// A stored blob is linked, not copied (nor even opened): no file to
		// create and fsync. Where it cannot be linked (another file system)
		// it is copied below.
		if err := g.outbox.Link(ctx, p.ID, name, src); err == nil || errors.Is(err, fs.ErrExist) {
			return nil
		}
	}
	r, err := g.blobs.Open(ctx, ref)
	if err != nil {
		return err
	}
	defer r.Close()
	if push {
		t, err := transport.Dial(ctx, *p.Outbound.Push, transport.Options{BaseDir: p.Dir})
		if err != nil {
			return fmt.Errorf("push %s to %s: %w", name, p.Outbound.Push.URL, err)
		}
		defer t.Close()
		if err := t.Write(ctx, name, r); err != nil {
			return fmt.Errorf("push %s to %s: %w", name, p.Outbound.Push.URL, err)
		}
		return nil
	}
	err = g.outbox.Put(ctx, p.ID, name, r)
	if errors.Is(err, fs.ErrExist) {
		return nil // written by an earlier run of this stage
	}
	return err
}

// blobPath is the file holding ref when it is one (the blob store is a
// local directory and the blob is not inline), for linking it instead of
// copying it.
func (g *Gateway) blobPath(ref spool.BlobRef) (string, bool) {
	p, err := g.blobs.Path(ref)
	return p, err == nil
}

// partnerFileName follows the partner's naming rule ({type}_{control}.{ext}).
func partnerFileName(p *partners.Partner, typ, control string, at time.Time) string {
	name := p.Outbound.Naming
	if name == "" {
		name = "{type}_{control}.{ext}"
	}
	at = at.UTC()
	return strings.NewReplacer("{type}", strings.ReplaceAll(typ, "+", "-"), "{control}", control,
		"{partner}", p.ID, "{date}", at.Format("20060102"), "{time}", at.Format("150405"), "{ext}", "x12").Replace(name)
}

// functionalAck is what a partner's 997/999 says about one of our groups.
type functionalAck struct {
	kind         string // 997 or 999
	groupControl string // AK102
	status       string // AK901: A, E, P, R (M, W, X in 999)
	errors       []string
}

// readFunctionalAck reads AK1, AK5/IK5 and AK9 from a 997/999's tree.
func readFunctionalAck(s *edi.Set) (functionalAck, bool) {
	fa := functionalAck{kind: s.ID}
	for seg := range s.Tree.Segments() {
		switch seg.TagString() {
		case "AK1":
			fa.groupControl = strings.TrimLeft(seg.Value(2), "0")
		case "AK9":
			fa.status = seg.Value(1)
		case "AK5", "IK5":
			if v := seg.Value(1); v != "A" {
				fa.errors = append(fa.errors, fmt.Sprintf("%s %s", seg.TagString(), strings.TrimRight(string(seg.Raw()), "~\r\n")))
			}
		case "AK3", "AK4", "IK3", "IK4":
			fa.errors = append(fa.errors, string(seg.Raw()))
		}
	}
	return fa, fa.groupControl != "" && fa.status != "" // a set without a tree has neither
}

// ackedDocument finds the outbound document (our 850) whose group a
// partner's 997/999 answers. It only reads: the ack is recorded on it by
// recordAck once the interchange carrying it is known not to be a
// duplicate.
func (g *Gateway) ackedDocument(ctx context.Context, p *partners.Partner, fa functionalAck) (spool.Document, error) {
	docs, _, err := g.store.ListDocuments(ctx, spool.DocumentFilter{Partner: p.ID, Direction: spool.Outbound, GroupControl: fa.groupControl, Page: spool.Page{Limit: 1}})
	if err != nil {
		return spool.Document{}, err
	}
	if len(docs) == 0 || docs[0].InterchangeID == "" {
		return spool.Document{}, fmt.Errorf("%s answers group %s, which we never sent to %s", fa.kind, fa.groupControl, p.ID)
	}
	return docs[0], nil
}

// recordAck records a partner's 997/999 (in its interchange inbound) on
// the interchange of our document d it answers, and tells the webhooks.
func (g *Gateway) recordAck(ctx context.Context, p *partners.Partner, inbound string, fa functionalAck, d spool.Document) error {
	detail := map[string]any{"status": fa.status, "ackInterchange": inbound}
	if len(fa.errors) > 0 {
		detail["errors"] = fa.errors
	}
	reason := fmt.Sprintf("%s %s from %s (ISA13 %s)", fa.kind, fa.status, p.ID, inbound)
	if err := g.store.SetInterchangeAck(ctx, d.InterchangeID, spool.Ack{Kind: fa.kind, Status: fa.status, Control: inbound, At: time.Now()},
		spool.WithActor(g.id), spool.WithReason(reason), spool.WithDetail(detail)); err != nil {
		return err
	}
	g.hooks.Emit(webhooks.AckReceived, string(d.ID), map[string]any{"partner": p.ID, "poNumber": d.BusinessKey, "kind": fa.kind,
		"status": fa.status, "errors": fa.errors, "ackInterchange": inbound})
	g.log.Info("functional ack received", "message_id", d.ID, "partner", p.ID, "po", d.BusinessKey, "status", fa.status, "kind", fa.kind)
	return nil
}

// overdueHorizon bounds how far back the overdue check looks: an 850 older
// than this without an ack was flagged long ago.
const overdueHorizon = 30 * 24 * time.Hour

// overdueEvent starts the note that flags an overdue purchase order (once).
const overdueEvent = "functional ack overdue"

// checkOverdue flags outbound purchase orders whose functional ack is
// overdue: an error event on the document (once) and a log line.
func (g *Gateway) checkOverdue(ctx context.Context) {
	pos, err := g.Ops().PurchaseOrders(ctx, ops.POFilter{Since: time.Now().Add(-overdueHorizon), Limit: 1000, NoResponses: true})
	if err != nil {
		g.log.Error("overdue check", "err", err)
		return
	}
	overdue := map[string]int{}
	for _, p := range g.partners().Partners() {
		overdue[p.ID] = 0
	}
	defer func() {
		for p, n := range overdue {
			g.metrics.AcksOverdue.WithLabelValues(p).Set(float64(n))
		}
	}()
	for _, po := range pos {
		if po.Status != ops.POOverdue {
			continue
		}
		overdue[po.Document.Partner]++
		evs, err := g.store.Events(ctx, po.Document.ID)
		if err != nil {
			g.log.Error("overdue check", "message_id", po.Document.ID, "err", err)
			continue
		}
		flagged := false
		for _, e := range evs {
			flagged = flagged || strings.HasPrefix(e.Message, overdueEvent)
		}
		if flagged {
			continue
		}
		msg := fmt.Sprintf("%s: %s sent no 997/999 for PO %s (ISA13 %s) by %s", overdueEvent, po.Document.Partner, po.Document.BusinessKey,
			po.ISA13, po.AckDueBy.UTC().Format(time.RFC3339))
		if err := g.store.AddEvent(ctx, spool.Event{Subject: po.Document.ID, Kind: spool.EventError, Actor: g.id, Message: msg}); err != nil {
			g.log.Error("overdue check", "message_id", po.Document.ID, "err", err)
			continue
		}
		g.hooks.Emit(webhooks.AckOverdue, string(po.Document.ID), map[string]any{"partner": po.Document.Partner,
			"poNumber": po.Document.BusinessKey, "isa13": po.ISA13, "dueBy": po.AckDueBy})
		g.log.Warn("purchase order ack overdue", "message_id", po.Document.ID, "partner", po.Document.Partner,
			"po", po.Document.BusinessKey, "isa13", po.ISA13, "due", po.AckDueBy)
	}
}
