package ops

import (
	"context"
	"encoding/json"
	"time"

	"github.com/edigw/edigw/spool"
)

// PO statuses of an outbound purchase order.
const (
	POQueued   = "queued"   // not yet delivered to the partner
	POSent     = "sent"     // delivered, no functional ack yet, not yet due
	POAccepted = "accepted" // the partner's 997/999 accepted it (AK9 A or E)
	POPartial  = "partial"  // accepted in part (AK9 P)
	PORejected = "rejected" // the partner's 997/999 rejected it (AK9 R)
	POOverdue  = "overdue"  // no functional ack within the partner's expect_ack_within
)

// PurchaseOrderView is an outbound 850 with its delivery and
// acknowledgement, and the partner's documents about the same PO number
// (its 855, the 856s and 810s that name it).
type PurchaseOrderView struct {
	Document  spool.Document
	File      spool.File
	ISA13     string
	Status    string
	Ack       spool.Ack // zero until the partner's 997/999 came
	AckDueBy  time.Time // zero when the partner is not expected to ack
	Responses []spool.Document
}

// POStatus decides an outbound purchase order's status at now.
func POStatus(f spool.File, ic spool.Interchange, now time.Time) (string, time.Time) {
	var meta struct {
		AckDueBy time.Time `json:"ackDueBy"`
	}
	if len(ic.Meta) > 0 {
		json.Unmarshal(ic.Meta, &meta)
	}
	switch {
	case ic.Ack.Kind != "" && (ic.Ack.Status == "A" || ic.Ack.Status == "E"):
		return POAccepted, meta.AckDueBy
	case ic.Ack.Kind != "" && ic.Ack.Status == "P":
		return POPartial, meta.AckDueBy
	case ic.Ack.Kind != "":
		return PORejected, meta.AckDueBy
	case !meta.AckDueBy.IsZero() && now.After(meta.AckDueBy):
		return POOverdue, meta.AckDueBy
	case f.State == spool.StateReceived || f.State == spool.StateRetrying:
		return POQueued, meta.AckDueBy
	}
	return POSent, meta.AckDueBy
}

// POFilter selects purchase orders.
type POFilter struct {
	Partner string    // "" = all
	Since   time.Time // sent at or after; zero = any time
	Limit   int
	// NoResponses skips looking up the partner's documents about each PO.
	NoResponses bool
}

// PurchaseOrders lists the outbound purchase orders, newest first.
func (s *Service) PurchaseOrders(ctx context.Context, f POFilter) ([]PurchaseOrderView, error) {
	docs, _, err := s.Store.ListDocuments(ctx, spool.DocumentFilter{Partner: f.Partner, Direction: spool.Outbound, Types: []string{"850"},
		Since: f.Since, Page: spool.Page{Limit: f.Limit}})
	if err != nil {
		return nil, err
	}
	now := time.Now()
	out := make([]PurchaseOrderView, 0, len(docs))
	for _, d := range docs {
		v := PurchaseOrderView{Document: d}
		if v.File, err = s.Store.GetFile(ctx, d.FileID); err != nil {
			return nil, err
		}
		ic, err := s.Store.GetInterchange(ctx, d.InterchangeID)
		if err != nil {
			return nil, err
		}
		v.ISA13, v.Ack = ic.Control, ic.Ack
		v.Status, v.AckDueBy = POStatus(v.File, ic, now)
		if d.BusinessKey != "" && !f.NoResponses {
			resp, _, err := s.Store.ListDocuments(ctx, spool.DocumentFilter{Partner: d.Partner, Direction: spool.Inbound, Ref: d.BusinessKey,
				Page: spool.Page{Limit: 100, Ascending: true}})
			if err != nil {
				return nil, err
			}
			v.Responses = resp
		}
		out = append(out, v)
	}
	return out, nil
}
