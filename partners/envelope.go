package partners

import (
	"strings"
	"time"

	"github.com/edigw/edigw/edi"
	"github.com/edigw/edigw/edi/spec"
	"github.com/edigw/edigw/mapping"
)

// DefaultOurISA is our identity when neither the partner nor the gateway
// configuration sets one.
var DefaultOurISA = ISAID{Qualifier: "ZZ", ID: "EDIGW"}

// Controls are the control numbers of one outbound interchange, handed out
// by the spool's per-partner counters.
type Controls struct {
	Interchange int64  // ISA13
	Group       int64  // GS06
	Set         string // ST02
}

// Envelope builds the X12 envelope of an outbound transaction set (an 850)
// to this partner: our identity as sender, theirs as receiver, the
// partner's version, usage indicator and delimiters. ours is the
// gateway-wide identity used when the profile sets none.
func (p *Partner) Envelope(functionalID string, ours ISAID, c Controls, now time.Time) mapping.Envelope {
	x := p.X12
	if !x.OurISA.IsZero() {
		ours = x.OurISA
	}
	if ours.IsZero() {
		ours = DefaultOurISA
	}
	ourGS := x.OurGSID
	if ourGS == "" {
		ourGS = ours.ID
	}
	isaVer, gsVer := "00401", "004010"
	if x.Version == "005010" {
		isaVer, gsVer = "00501", "005010"
	}
	eol := ""
	if x.Newline {
		eol = "\n"
	}
	d := x.Delimiters
	if isaVer >= "00402" && d.Repetition == 0 {
		d.Repetition = edi.DefaultDelimiters.Repetition
	}
	return mapping.Envelope{
		Interchange: edi.ISAHeader{SenderQualifier: ours.Qualifier, SenderID: ours.ID,
			ReceiverQualifier: x.ISA.Qualifier, ReceiverID: x.ISA.ID,
			Date: now.Format("060102"), Time: now.Format("1504"), Version: isaVer,
			Control: c.Interchange, Usage: strings.ToUpper(x.Usage)},
		Group: edi.GSHeader{FunctionalID: functionalID, Sender: ourGS, Receiver: x.GSID,
			Date: now.Format("20060102"), Time: now.Format("1504"), Control: c.Group, Version: gsVer},
		SetControl: c.Set,
		Delimiters: d,
		EOL:        eol,
	}
}

// SpecSet returns the spec edi.Process should validate set id of version
// family with: the partner's (with its guide overlay) for the partner's own
// version, the standard one otherwise.
func (p *Partner) SpecSet(family, id string) *spec.Set {
	if p.X12 != nil && family == p.X12.Version {
		return p.TransactionSet(id)
	}
	return spec.Default(family).Set(id)
}
