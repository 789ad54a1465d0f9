package edi

import (
	"fmt"
	"io"
	"strconv"
	"time"
)

// AckOptions configure acknowledgement generation.
type AckOptions struct {
	// Control returns the next ISA13 (and GS06) for an acknowledgement
	// interchange. It must never hand out a number twice for a partner; the
	// spool's counters do that in the gateway.
	Control func() (int64, error)
	// Now is the clock for ISA09/10 and GS04/05 (default time.Now).
	Now func() time.Time
	// Delimiters for the ack; default: the acknowledged interchange's own.
	Delimiters *Delimiters
	// EOL written after each segment terminator ("" by default).
	EOL string
	// Functional is the partner's choice of functional acknowledgement:
	// "997", "999", "none", or "" for 999 on 005010 groups and 997 otherwise.
	Functional string
	// TA1 is the partner's TA1 policy: "always", "on_request" (default:
	// ISA14 = 1 or a bad envelope), "on_error" or "never".
	TA1 string
}

// Implementation convention of the 999 that edigw writes.
const Ack999Version = "005010X231A1"

// AckPlan says what an interchange gets back.
type AckPlan struct {
	TA1    bool     // a TA1 is due (ISA14 = 1, or the envelope is bad)
	Groups []*Group // groups that get a 997/999 (not FA groups, not when rejected)
}

// Empty reports whether nothing is due.
func (p AckPlan) Empty() bool { return !p.TA1 && len(p.Groups) == 0 }

// PlanAck decides what acknowledges ic by default: a TA1 when ISA14 = 1 or
// the interchange envelope is bad; a 997/999 for every functional group of
// an accepted interchange except functional acknowledgements themselves.
func PlanAck(ic *Interchange) AckPlan { return AckOptions{}.Plan(ic) }

// Plan is PlanAck with the partner's policies (TA1, Functional "none").
func (o AckOptions) Plan(ic *Interchange) AckPlan {
	p := AckPlan{}
	switch o.TA1 {
	case "always":
		p.TA1 = true
	case "on_error":
		p.TA1 = ic.Rejected()
	case "never":
	default:
		p.TA1 = ic.AckRequested || ic.Rejected()
	}
	if ic.Rejected() || o.Functional == "none" {
		return p
	}
	for _, g := range ic.Groups {
		if g.FunctionalID != "FA" {
			p.Groups = append(p.Groups, g)
		}
	}
	return p
}

// TA1Code returns TA104 and TA105 for the interchange.
func TA1Code(ic *Interchange) (string, string) {
	if ic.Rejected() {
		return "R", ic.Findings[0].Code
	}
	return "A", TA1NoError
}

// uses999 reports whether the group is acknowledged with a 999 or a 997:
// the partner's policy when it has one, else 999 for 005010 groups and 997
// for everything else.
func (o AckOptions) uses999(g *Group) bool {
	switch o.Functional {
	case "997":
		return false
	case "999":
		return true
	}
	return g.Family == "005010"
}

// WriteAck writes the acknowledgement interchange for ic to w and reports
// whether anything was due. Sender and receiver are swapped, qualifiers kept.
func WriteAck(out io.Writer, ic *Interchange, opt AckOptions) (bool, error) {
	plan := opt.Plan(ic)
	if plan.Empty() {
		return false, nil
	}
	now := time.Now
	if opt.Now != nil {
		now = opt.Now
	}
	t := now()
	ctl, err := opt.Control()
	if err != nil {
		return false, fmt.Errorf("ack control number: %w", err)
	}
	version := "00401"
	if digits(ic.Version) && ic.Version >= "00500" && ic.Version <= "00599" {
		version = "00501"
	}
	for _, g := range plan.Groups {
		if opt.uses999(g) {
			version = "00501"
		}
	}
	d := ackDelimiters(ic, opt, version)
	w := NewWriter(out, d, opt.EOL)
	usage := ic.Usage
	if usage != "P" && usage != "T" && usage != "I" {
		usage = "P"
	}
	if err := w.BeginInterchange(ISAHeader{
		SenderQualifier: w.Safe(fixed(ic.ReceiverQualifier, 2)), SenderID: w.Safe(fixed(ic.ReceiverID, 15)),
		ReceiverQualifier: w.Safe(fixed(ic.SenderQualifier, 2)), ReceiverID: w.Safe(fixed(ic.SenderID, 15)),
		Date: t.Format("060102"), Time: t.Format("1504"), Version: version,
		Control: ctl, Usage: usage,
	}); err != nil {
		return false, fmt.Errorf("ack for interchange %s: %w", ic.Control, err)
	}
	if plan.TA1 {
		a, note := TA1Code(ic)
		w.Seg("TA1").Els(w.Safe(ic.Control), w.Safe(ic.Date), w.Safe(ic.Time), a, note).End()
	}
	// One GS*FA group per run of groups sharing version kind and addresses.
	gctl := ctl
	for i := 0; i < len(plan.Groups); {
		g0 := plan.Groups[i]
		j := i + 1
		for j < len(plan.Groups) {
			g := plan.Groups[j]
			if opt.faVersion(g) != opt.faVersion(g0) || g.Sender != g0.Sender || g.Receiver != g0.Receiver {
				break
			}
			j++
		}
		gv := opt.faVersion(g0)
		w.BeginGroup(GSHeader{FunctionalID: "FA", Sender: w.Safe(g0.Receiver), Receiver: w.Safe(g0.Sender),
			Date: t.Format("20060102"), Time: t.Format("1504"), Control: gctl, Version: gv})
		gctl++
		for k, g := range plan.Groups[i:j] {
			writeFA(w, g, fmt.Sprintf("%04d", k+1), opt.uses999(g))
		}
		w.EndGroup()
		i = j
	}
	w.EndInterchange()
	if err := w.Flush(); err != nil {
		return false, fmt.Errorf("ack for interchange %s: %w", ic.Control, err)
	}
	return true, nil
}

// ackDelimiters answers in the partner's own delimiters when they are sound,
// adding a repetition separator when the ack's version needs one.
func ackDelimiters(ic *Interchange, opt AckOptions, version string) Delimiters {
	d := ic.Delimiters
	if opt.Delimiters != nil {
		d = *opt.Delimiters
	}
	distinct := func(cs ...byte) bool {
		for i, a := range cs {
			if isAlnum(a) || a == ' ' || a < 0x20 && a != '\n' && a != '\r' && (a < 0x1c || a > 0x1f) {
				return false
			}
			for _, b := range cs[i+1:] {
				if a == b {
					return false
				}
			}
		}
		return true
	}
	if !distinct(d.Element, d.Component, d.Segment) {
		d = DefaultDelimiters
	}
	if version < "00402" {
		d.Repetition = 0
	} else if d.Repetition == 0 || !distinct(d.Element, d.Component, d.Segment, d.Repetition) {
		for _, c := range []byte("^!|{}`") {
			if distinct(d.Element, d.Component, d.Segment, c) {
				d.Repetition = c
				break
			}
		}
	}
	return d
}

// faVersion is GS08 of the FA group acknowledging g.
func (o AckOptions) faVersion(g *Group) string {
	switch {
	case o.uses999(g):
		return Ack999Version
	case g.Family == "005010":
		return "005010"
	}
	return "004010"
}

// fixed cuts a value to a fixed-width ISA field (a partner's over-long ID
// cannot be echoed whole).
func fixed(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// writeFA writes one 997 (004010 and others) or 999 (005010) for group g.
func writeFA(w *Writer, g *Group, control string, is999 bool) {
	id, impl, seg3, seg4, seg5 := "997", "", "AK3", "AK4", "AK5"
	if is999 {
		id, impl, seg3, seg4, seg5 = "999", Ack999Version, "IK3", "IK4", "IK5"
	}
	w.BeginSet(id, control, impl)
	if is999 || g.Family == "005010" {
		w.Seg("AK1").Els(w.Safe(g.FunctionalID), w.Safe(g.Control), w.Safe(g.Version)).End()
	} else {
		w.Seg("AK1").Els(w.Safe(g.FunctionalID), w.Safe(g.Control)).End()
	}
	status := g.Status()
	if g.supported {
		for _, s := range g.Sets {
			ak2 := w.Seg("AK2").Els(w.Safe(s.ID), w.Safe(s.Control))
			if is999 {
				ak2.El(w.Safe(s.ImplRef))
			}
			ak2.End()
			writeSegmentErrors(w, g, s, seg3, seg4)
			codes := setCodes(s)
			w.Seg(seg5).El(s.Status).Els(codes...).End()
		}
	}
	accepted, _ := g.Counts()
	if status == "R" {
		accepted = 0
	}
	declared := g.DeclaredSets
	if declared < 0 {
		declared = len(g.Sets)
	}
	var gcodes []string
	for _, f := range g.Findings {
		gcodes = appendCode(gcodes, f.Code)
	}
	w.Seg("AK9").Els(status, strconv.Itoa(declared), strconv.Itoa(len(g.Sets)), strconv.Itoa(accepted)).Els(gcodes...).End()
	w.EndSet()
}

// setCodes are AK502-AK506: the set-level codes, and 5 when segments are in error.
func setCodes(s *SetResult) []string {
	var codes []string
	segErr := false
	for _, f := range s.Findings {
		switch f.Level {
		case LevelSet:
			codes = appendCode(codes, f.Code)
		case LevelSegment:
			segErr = true
		}
	}
	if segErr {
		codes = appendCode(codes, SetSegmentsInError)
	}
	return codes
}

// appendCode adds a code once, keeping at most five (the AK5/AK9 limit).
func appendCode(codes []string, c string) []string {
	for _, x := range codes {
		if x == c {
			return codes
		}
	}
	if len(codes) == 5 {
		return codes
	}
	return append(codes, c)
}

func writeSegmentErrors(w *Writer, g *Group, s *SetResult, seg3, seg4 string) {
	d := w.Delimiters()
	for _, f := range s.Findings {
		switch f.Level {
		case LevelSegment:
			w.Seg(seg3).Els(w.Safe(f.SegmentID), strconv.Itoa(f.Pos.InSet), w.Safe(fixedLoop(f.LoopID)), f.Code).End()
		case LevelElement:
			pos := []string{strconv.Itoa(f.Element), "", ""}
			if f.Component > 0 {
				pos[1] = strconv.Itoa(f.Component)
			}
			if f.Repetition > 0 && g.Family == "005010" {
				pos[2] = strconv.Itoa(f.Repetition)
			}
			w.Seg(seg4).Comp(pos...).El(f.ElementRef).El(f.Code).El(safeCopy(f.Value, d)).End()
		}
	}
}

// fixedLoop keeps AK303 within its 1-4 characters.
func fixedLoop(id string) string {
	if len(id) > 4 {
		return id[:4]
	}
	return id
}

// safeCopy returns the bad value for AK404 unless it cannot be written as is
// (a delimiter or a non-printable byte inside): then it is left out.
func safeCopy(v string, d Delimiters) string {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x20 || c > 0x7e || c == d.Element || c == d.Component || c == d.Segment || (d.Repetition != 0 && c == d.Repetition) {
			return ""
		}
	}
	return v
}
