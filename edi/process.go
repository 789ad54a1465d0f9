package edi

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/edigw/edigw/edi/spec"
)

// Interchange is one ISA..IEA envelope and what was found about it.
type Interchange struct {
	ISA        Segment // owned copy
	Delimiters Delimiters
	Control    string // ISA13
	// Sender and receiver as written, trailing blanks removed.
	SenderQualifier, SenderID     string
	ReceiverQualifier, ReceiverID string
	Date, Time                    string // ISA09 YYMMDD, ISA10 HHMM
	Version                       string // ISA12
	AckRequested                  bool   // ISA14 = 1
	Usage                         string // ISA15
	Pos                           Position
	// Findings are interchange-level (TA1 note codes); any one rejects the
	// interchange, and then nothing inside it is acknowledged or processed.
	Findings   []Finding
	Tolerances []Tolerance
	Groups     []*Group // completed groups, in order
	// TA1 holds interchange acknowledgements received in this interchange
	// (they stand between ISA and the first GS).
	TA1      []Segment
	groupIDs map[string]bool
}

// Rejected reports whether the interchange envelope is bad.
func (ic *Interchange) Rejected() bool { return len(ic.Findings) > 0 }

func (ic *Interchange) fail(pos Position, code, msg string) {
	// One finding per code is enough to tell the partner what to fix.
	for _, f := range ic.Findings {
		if f.Code == code {
			return
		}
	}
	ic.Findings = append(ic.Findings, Finding{Level: LevelInterchange, Code: code, Pos: pos, Msg: msg})
}

// Group is one GS..GE functional group.
type Group struct {
	GS               Segment // owned copy
	FunctionalID     string  // GS01
	Sender, Receiver string  // GS02, GS03
	Date, Time       string
	Control          string // GS06
	Version          string // GS08
	Family           string // supported spec version for GS08 ("004010", "005010") or ""
	Pos              Position
	Findings         []Finding // group-level (AK905 codes)
	Sets             []*SetResult
	DeclaredSets     int // GE01; -1 when GE is missing
	setIDs           map[string]bool
	supported        bool // version and functional id are known: sets can be validated
}

// Status is the AK901 code for the group: A, E, P or R.
func (g *Group) Status() string {
	if len(g.Findings) > 0 {
		return "R"
	}
	acc, errs := g.Counts()
	switch {
	case len(g.Sets) == 0:
		return "R"
	case acc == 0:
		return "R"
	case acc < len(g.Sets):
		return "P"
	case errs > 0:
		return "E"
	}
	return "A"
}

// Counts returns the number of accepted sets (A or E) and of those, the ones
// accepted with errors noted.
func (g *Group) Counts() (accepted, withErrors int) {
	for _, s := range g.Sets {
		switch s.Status {
		case "A":
			accepted++
		case "E":
			accepted++
			withErrors++
		}
	}
	return
}

// SetResult is the verdict on one transaction set.
type SetResult struct {
	ID       string // ST01
	Control  string // ST02
	ImplRef  string // ST03 (005010)
	Pos      Position
	Segments int       // segments counted ST..SE
	Findings []Finding // set, segment and element findings
	Status   string    // AK501: A, E or R
}

// Set is a transaction set handed to Options.OnSet.
type Set struct {
	*SetResult
	Spec *spec.Set // nil when the set is not supported
	Tree *Node     // loop tree, when Options.Tree is set
}

// Options configure Process.
type Options struct {
	// Dictionary returns the specs for a version family ("004010", "005010");
	// default spec.Default. Partner overlays plug in here.
	Dictionary func(family string) *spec.Dictionary
	// Set, when not nil, returns the spec of a set the dictionary defines:
	// the partner's guide overlay (spec.Dictionary.Apply) plugs in here.
	Set func(family, id string) *spec.Set
	// Tree builds the loop tree of each set (costs memory per set).
	Tree bool
	// MaxSegment bounds one segment's size (default DefaultMaxSegment).
	MaxSegment int
	// OnInterchangeStart and OnGroupStart are called after ISA and GS were
	// read and checked (streaming consumers write headers there).
	OnInterchangeStart func(ic *Interchange)
	OnGroupStart       func(ic *Interchange, g *Group)
	// OnSet is called after each transaction set; the Set and its tree are
	// only valid during the call.
	OnSet func(ic *Interchange, g *Group, s *Set)
	// OnGroup is called after each functional group.
	OnGroup func(ic *Interchange, g *Group)
	// OnInterchange is called after each interchange (also a rejected or
	// truncated one).
	OnInterchange func(ic *Interchange)
}

// maxFindingsPerSet bounds the findings kept for one set, so that a garbage
// set cannot make an acknowledgement (or memory) explode.
const maxFindingsPerSet = 1000

var procPool = sync.Pool{New: func() any {
	p := &processor{}
	p.rd = *NewReader(nil)
	return p
}}

type processor struct {
	rd  Reader
	opt Options
	ic  *Interchange
	g   *Group
	set *setState // the set being read (&setBuf), or nil
	// setBuf and setArg are reused from set to set: the state of the set
	// being read, and what OnSet gets (valid only during the call).
	setBuf setState
	setArg Set
	// orphan is true while skipping the body of an ST outside a group.
	orphan bool
	val    validator
}

// Process reads every interchange from r, checks envelopes, validates each
// transaction set against its spec and calls the Options callbacks. It
// returns an error wrapping ErrNotX12 when r holds no interchange, a read
// error, or a *SyntaxError for unreadable data after the last interchange;
// problems inside an interchange become its findings instead.
func Process(r io.Reader, opt Options) error {
	if opt.Dictionary == nil {
		opt.Dictionary = spec.Default
	}
	// Processors (with their reader buffer, validator stack and tree arenas)
	// are pooled: a gateway parses many small files, and setting these up
	// would cost more than parsing a 2 KB purchase order.
	p := procPool.Get().(*processor)
	defer func() {
		p.opt, p.ic, p.g, p.set, p.orphan = Options{}, nil, nil, nil, false
		p.rd.r = nil
		procPool.Put(p)
	}()
	p.opt = opt
	rd := &p.rd
	rd.reset(r)
	rd.findPlain = true
	if opt.MaxSegment > 0 {
		rd.MaxSegment = opt.MaxSegment
	}
	for {
		seg, err := rd.Next()
		if err != nil {
			if p.ic != nil {
				p.ic.Tolerances = append(p.ic.Tolerances, rd.Tolerances()...)
				pos := Position{Offset: rd.Offset(), ISA13: p.ic.Control}
				code := TA1PrematureEOF
				var se *SyntaxError
				if errors.As(err, &se) {
					pos = se.Pos
					if strings.Contains(se.Msg, "longer than") {
						code = TA1BadControlStructure
					}
				}
				p.ic.fail(pos, code, err.Error())
				p.endInterchange(nil)
				if errors.As(err, &se) {
					return nil // reported as a finding
				}
			}
			if err == io.EOF {
				return nil
			}
			return err
		}
		p.segment(seg, rd)
	}
}

func (p *processor) segment(seg *Segment, rd *Reader) {
	tag := seg.Tag()
	// The envelope segments (ISA, IEA, GS, GE, ST, SE) have 2 or 3 letters
	// and start with I, G or S: most others skip their compares.
	envelope := len(tag) >= 2 && len(tag) <= 3 && (tag[0] == 'S' || tag[0] == 'G' || tag[0] == 'I')
	switch {
	case !envelope:
	case string(tag) == "ISA":
		if p.ic != nil {
			p.ic.fail(seg.Pos, TA1PrematureEOF, "interchange "+p.ic.Control+" has no IEA before the next ISA")
			p.endInterchange(nil)
		}
		p.beginInterchange(seg, rd)
		return
	case string(tag) == "IEA":
		p.ic.Tolerances = append(p.ic.Tolerances, rd.Tolerances()...)
		p.endInterchange(seg)
		return
	case string(tag) == "GS":
		if p.g != nil {
			p.endGroup(nil, seg.Pos)
		}
		p.beginGroup(seg)
		return
	case string(tag) == "GE":
		if p.g == nil {
			p.ic.fail(seg.Pos, TA1BadContent, "GE without GS")
			return
		}
		p.endGroup(seg, seg.Pos)
		return
	case string(tag) == "ST":
		if p.g == nil {
			p.ic.fail(seg.Pos, TA1BadContent, "ST outside a functional group")
			p.orphan = true
			return
		}
		if p.set != nil {
			p.endSet(nil, seg.Pos)
		}
		p.beginSet(seg)
		return
	case string(tag) == "SE":
		if p.orphan {
			p.orphan = false
			return
		}
		if p.set == nil {
			p.ic.fail(seg.Pos, TA1BadContent, "SE without ST")
			return
		}
		p.endSet(seg, seg.Pos)
		return
	}
	switch {
	case p.g == nil && string(tag) == "TA1" && len(p.ic.Groups) == 0:
		p.ic.TA1 = append(p.ic.TA1, seg.Clone())
		if seg.Len() != 5 || len(seg.Element(1)) != 9 || !digitsB(seg.Element(1)) {
			p.ic.fail(seg.Pos, TA1BadContent, fmt.Sprintf("malformed TA1 segment %q", seg.Raw()))
		}
	case p.set != nil:
		p.set.count++
		p.val.segment(seg)
	case p.orphan:
	default:
		where := "outside a transaction set"
		if p.g == nil {
			where = "outside a functional group"
		}
		p.ic.fail(seg.Pos, TA1BadContent, fmt.Sprintf("segment %s %s", tag, where))
	}
}

func trimRight(s string) string { return strings.TrimRight(s, " ") }

func (p *processor) beginInterchange(seg *Segment, rd *Reader) {
	ic := &Interchange{ISA: seg.Clone(), Delimiters: seg.delim, Pos: seg.Pos, groupIDs: map[string]bool{}}
	ic.Control = seg.Value(13)
	ic.SenderQualifier, ic.SenderID = seg.Value(5), trimRight(seg.Value(6))
	ic.ReceiverQualifier, ic.ReceiverID = seg.Value(7), trimRight(seg.Value(8))
	ic.Date, ic.Time, ic.Version = seg.Value(9), seg.Value(10), seg.Value(12)
	ic.AckRequested = seg.Value(14) == "1"
	ic.Usage = seg.Value(15)
	ic.Tolerances = rd.Tolerances()
	checkISA(ic, seg)
	p.ic = ic
	if p.opt.OnInterchangeStart != nil {
		p.opt.OnInterchangeStart(ic)
	}
}

func (p *processor) endInterchange(iea *Segment) {
	ic := p.ic
	if ic == nil {
		return
	}
	pos := ic.Pos
	if iea != nil {
		pos = iea.Pos
	}
	if p.g != nil {
		p.endGroup(nil, pos)
	}
	if iea != nil {
		groups := len(ic.Groups)
		if n, err := strconv.Atoi(iea.Value(1)); err != nil || n != groups {
			ic.fail(iea.Pos, TA1BadGroupCount, fmt.Sprintf("IEA01 %q but %d functional groups counted", iea.Value(1), groups))
		}
		if !sameNumber(iea.Value(2), ic.Control) {
			ic.fail(iea.Pos, TA1ControlMismatch, fmt.Sprintf("IEA02 %q does not match ISA13 %q", iea.Value(2), ic.Control))
		}
	}
	p.ic, p.orphan = nil, false
	if p.opt.OnInterchange != nil {
		p.opt.OnInterchange(ic)
	}
}

// sameNumber compares two numeric control numbers (N0: leading zeros do not
// matter); non-numeric values must be identical.
func sameNumber(a, b string) bool {
	if a == b {
		return true
	}
	x, err1 := strconv.ParseUint(a, 10, 64)
	y, err2 := strconv.ParseUint(b, 10, 64)
	return err1 == nil && err2 == nil && x == y
}

func (p *processor) beginGroup(seg *Segment) {
	g := &Group{GS: seg.Clone(), Pos: seg.Pos, DeclaredSets: -1, setIDs: map[string]bool{}}
	g.FunctionalID, g.Sender, g.Receiver = seg.Value(1), seg.Value(2), seg.Value(3)
	g.Date, g.Time, g.Control, g.Version = seg.Value(4), seg.Value(5), seg.Value(6), seg.Value(8)
	g.Family = spec.Family(g.Version)
	checkGS(p.ic, g, seg)
	if p.ic.groupIDs[g.Control] {
		g.fail(seg.Pos, GroupControlNotUnique, "GS06 "+g.Control+" is not unique within the interchange")
	}
	p.ic.groupIDs[g.Control] = true
	p.g = g
	if p.opt.OnGroupStart != nil {
		p.opt.OnGroupStart(p.ic, g)
	}
}

func (g *Group) fail(pos Position, code, msg string) {
	g.Findings = append(g.Findings, Finding{Level: LevelGroup, Code: code, Pos: pos, Msg: msg})
}

func (p *processor) endGroup(ge *Segment, pos Position) {
	g := p.g
	if p.set != nil {
		p.endSet(nil, pos)
	}
	if ge == nil {
		g.fail(pos, GroupTrailerMissing, "functional group "+g.Control+" has no GE")
	} else {
		if n, err := strconv.Atoi(ge.Value(1)); err == nil {
			g.DeclaredSets = n
		}
		if g.DeclaredSets != len(g.Sets) {
			g.fail(ge.Pos, GroupCountMismatch, fmt.Sprintf("GE01 %q but %d transaction sets counted", ge.Value(1), len(g.Sets)))
		}
		if !sameNumber(ge.Value(2), g.Control) {
			g.fail(ge.Pos, GroupControlMismatch, fmt.Sprintf("GE02 %q does not match GS06 %q", ge.Value(2), g.Control))
		}
	}
	p.g = nil
	p.ic.Groups = append(p.ic.Groups, g)
	if p.opt.OnGroup != nil {
		p.opt.OnGroup(p.ic, g)
	}
}

// setState is the set being read.
type setState struct {
	res   *SetResult
	spec  *spec.Set
	count int // segments so far, ST included
}

func (p *processor) beginSet(seg *Segment) {
	// The tree refers to the segments' bytes in the reader's buffer (from
	// this ST on) until OnSet returns.
	p.rd.hold = p.opt.Tree
	res := &SetResult{ID: seg.Value(1), Control: seg.Value(2), ImplRef: seg.Value(3), Pos: seg.Pos}
	p.setBuf = setState{res: res, count: 1}
	st := &p.setBuf
	p.set = st
	g := p.g
	fail := func(code, msg string) {
		res.Findings = append(res.Findings, Finding{Level: LevelSet, Code: code, Pos: seg.Pos, Msg: msg})
	}
	if c := res.Control; len(c) < 4 || len(c) > 9 || !printable(c) {
		fail(SetBadControlNumber, fmt.Sprintf("ST02 %q must be 4-9 characters", c))
	} else if g.setIDs[c] {
		fail(SetControlNotUnique, "ST02 "+c+" is not unique within the functional group")
	}
	g.setIDs[res.Control] = true
	var dict *spec.Dictionary
	if g.supported {
		dict = p.opt.Dictionary(g.Family)
	}
	var set *spec.Set
	if dict != nil {
		set = dict.Set(res.ID)
		if p.opt.Set != nil && set != nil {
			set = p.opt.Set(g.Family, res.ID)
		}
	}
	switch {
	case res.ID == "":
		fail(SetBadIdentifier, "ST01 is missing")
	case dict == nil:
		// the group is rejected already (unsupported version or functional id)
	case set == nil:
		fail(SetNotSupported, fmt.Sprintf("transaction set %s is not supported in %s", res.ID, g.Family))
	case set.FunctionalGroup != g.FunctionalID:
		fail(SetBadIdentifier, fmt.Sprintf("transaction set %s belongs in a %s group, not %s", res.ID, set.FunctionalGroup, g.FunctionalID))
	default:
		st.spec = set
	}
	p.val.reset(dict, st.spec, res, p.opt.Tree, g.Family)
	if st.spec != nil {
		p.val.segment(seg)
	}
}

func (p *processor) endSet(se *Segment, pos Position) {
	st := p.set
	res := st.res
	fail := func(code string, pos Position, msg string) {
		res.Findings = append(res.Findings, Finding{Level: LevelSet, Code: code, Pos: pos, Msg: msg})
	}
	if se == nil {
		fail(SetTrailerMissing, pos, "transaction set "+res.Control+" has no SE")
	} else {
		st.count++
		if st.spec != nil {
			p.val.segment(se)
		}
		if n, err := strconv.Atoi(se.Value(1)); err != nil || n != st.count {
			fail(SetCountMismatch, se.Pos, fmt.Sprintf("SE01 %q but %d segments counted (ST through SE)", se.Value(1), st.count))
		}
		if se.Value(2) != res.Control {
			fail(SetControlMismatch, se.Pos, fmt.Sprintf("SE02 %q does not match ST02 %q", se.Value(2), res.Control))
		}
	}
	res.Segments = st.count
	p.val.finish(se != nil)
	res.Status = "A"
	if !p.g.supported {
		res.Status = "R" // not validated: the group's version or functional id is not supported
	}
	for _, f := range res.Findings {
		if f.Level == LevelSet || f.Level == LevelSegment {
			res.Status = "R"
			break
		}
	}
	p.set = nil
	p.g.Sets = append(p.g.Sets, res)
	if p.opt.OnSet != nil {
		p.setArg = Set{SetResult: res, Spec: st.spec, Tree: p.val.tree()}
		p.opt.OnSet(p.ic, p.g, &p.setArg)
		p.setArg = Set{}
	}
	p.rd.release()
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
