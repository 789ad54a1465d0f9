package edi

import (
	"fmt"

	"github.com/edigw/edigw/edi/spec"
)

// isaField describes one fixed-width ISA element and the TA1 note code that
// reports it.
type isaField struct {
	width int
	code  string
	valid func(v string) bool
}

func oneOf(codes ...string) func(string) bool {
	return func(v string) bool {
		for _, c := range codes {
			if v == c {
				return true
			}
		}
		return false
	}
}

// Interchange ID qualifiers (I05) across 004010 and 005010.
var idQualifier = oneOf("01", "02", "03", "04", "07", "08", "09", "10", "11", "12", "13", "14", "15", "16", "17",
	"18", "19", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29", "30", "31", "32", "33", "34", "35", "36",
	"37", "38", "AM", "NR", "SA", "SN", "ZZ")

func anyText(v string) bool { return printable(v) }

func notBlank(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] != ' ' {
			return printable(v)
		}
	}
	return false
}

func digits(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return false
		}
	}
	return v != ""
}

var isaFields = [16]isaField{
	{2, TA1BadAuthQualifier, oneOf("00", "01", "02", "03", "04", "05", "06")},
	{10, TA1BadAuthInfo, anyText},
	{2, TA1BadSecQualifier, oneOf("00", "01")},
	{10, TA1BadSecInfo, anyText},
	{2, TA1BadSenderQualifier, idQualifier},
	{15, TA1BadSenderID, notBlank},
	{2, TA1BadReceiverQualifier, idQualifier},
	{15, TA1BadReceiverID, notBlank},
	{6, TA1BadDate, func(v string) bool { return validDate([]byte(v)) }},
	{4, TA1BadTime, func(v string) bool { return validTime([]byte(v)) }},
	{1, TA1BadStandardsID, nil}, // checked with the version below
	{5, TA1BadVersion, digits},
	{9, TA1BadControlNumber, digits},
	{1, TA1BadAckRequested, oneOf("0", "1")},
	{1, TA1BadTestIndicator, oneOf("P", "T", "I")},
	{1, TA1BadComponentSep, nil}, // checked against the other delimiters below
}

// checkISA validates the ISA's fixed fields and delimiters. The first bad
// field decides TA105; all are listed as findings.
func checkISA(ic *Interchange, seg *Segment) {
	d := seg.delim
	fail := func(code, msg string) { ic.fail(seg.Pos, code, msg) }
	if n := len(seg.Raw()) + 1; n != 106 {
		// The field-width checks below say which field is off.
		defer func() {
			if len(ic.Findings) == 0 {
				fail(TA1BadControlStructure, fmt.Sprintf("ISA is %d characters, not 106", n))
			} else {
				ic.Findings[0].Msg += fmt.Sprintf(" (ISA is %d characters, not 106)", n)
			}
		}()
	}
	if c := d.Component; isAlnum(c) || c == ' ' || c == d.Element || c == d.Segment || (d.Repetition != 0 && c == d.Repetition) {
		fail(TA1BadComponentSep, fmt.Sprintf("ISA16 component separator %q is not valid", c))
	}
	if seg.Len() != 16 {
		fail(TA1BadControlStructure, fmt.Sprintf("ISA has %d elements, not 16", seg.Len()))
		return
	}
	for i, f := range isaFields {
		v := seg.Value(i + 1)
		name := fmt.Sprintf("ISA%02d", i+1)
		if len(v) != f.width {
			fail(f.code, fmt.Sprintf("%s %q must be exactly %d characters", name, v, f.width))
			continue
		}
		if f.valid != nil && !f.valid(v) {
			fail(f.code, fmt.Sprintf("%s %q is not valid", name, v))
		}
	}
	ver := seg.Value(12)
	if digits(ver) && len(ver) == 5 {
		if ver < "00200" || ver > "00899" {
			fail(TA1VersionUnsupported, "ISA12 version "+ver+" is not supported")
		}
		isa11 := seg.Value(11)
		if ver < "00402" {
			if isa11 != "U" {
				fail(TA1BadStandardsID, fmt.Sprintf("ISA11 %q must be U (standards identifier) in version %s", isa11, ver))
			}
		} else if d.Repetition == 0 {
			fail(TA1BadStandardsID, fmt.Sprintf("ISA11 %q is not a valid repetition separator in version %s", isa11, ver))
		}
	}
}

// Functional identifier codes (479) edigw recognises in GS01.
var knownFunctionalIDs = map[string]bool{}

func init() {
	for _, c := range []string{"AG", "AN", "AR", "AS", "BS", "CA", "CT", "DX", "FA", "FT", "GF", "IB", "IM", "IN", "IR",
		"OW", "PC", "PD", "PO", "PR", "PS", "QM", "RA", "RC", "RN", "RS", "SC", "SH", "SM", "SO", "SW", "TX", "UA", "WA",
		"HC", "HP", "HS", "HR", "HI", "HN", "BE", "RT", "MR", "CC", "CI", "CR", "DA", "GE", "IA", "IS", "MA", "ME", "OG",
		"PA", "PG", "PI", "QO", "SA", "ST", "TM", "WB", "WG", "WL", "WR"} {
		knownFunctionalIDs[c] = true
	}
}

// checkGS validates a GS header. Faults AK9 can express become group findings
// (the group is rejected); a GS that is otherwise malformed makes the
// interchange content invalid (TA1 024).
func checkGS(ic *Interchange, g *Group, seg *Segment) {
	bad := func(msg string) { ic.fail(seg.Pos, TA1BadContent, "invalid GS: "+msg) }
	if seg.Len() < 8 {
		bad(fmt.Sprintf("GS has %d elements, needs 8", seg.Len()))
	}
	if seg.Len() > 8 {
		bad(fmt.Sprintf("GS has %d elements, not 8", seg.Len()))
	}
	for i, w := range [][2]int{{2, 15}, {2, 15}} {
		if v := seg.Value(i + 2); len(v) < w[0] || len(v) > w[1] || !printable(v) {
			bad(fmt.Sprintf("GS%02d %q must be %d-%d characters", i+2, v, w[0], w[1]))
		}
	}
	// GS04 is CCYYMMDD from version 004010 on, YYMMDD before.
	if d := seg.Element(4); !validDate(d) || len(d) == 6 && g.Version >= "004" {
		bad(fmt.Sprintf("GS04 %q is not a CCYYMMDD date", d))
	}
	if t := seg.Element(5); len(t) < 4 || len(t) > 8 || !validTime(t) {
		bad(fmt.Sprintf("GS05 %q is not a valid time", t))
	}
	if a := seg.Value(7); a != "X" && a != "T" {
		bad(fmt.Sprintf("GS07 %q must be X", a))
	}
	switch {
	case !knownFunctionalIDs[g.FunctionalID]:
		g.fail(seg.Pos, GroupNotSupported, fmt.Sprintf("GS01 functional identifier %q is not supported", g.FunctionalID))
	case g.Family == "":
		g.fail(seg.Pos, GroupVersionNotSupported, fmt.Sprintf("GS08 version %q is not supported (edigw reads 004xxx and 005xxx)", g.Version))
	default:
		g.supported = spec.Default(g.Family) != nil
	}
	if c := g.Control; len(c) < 1 || len(c) > 9 || !digits(c) {
		g.fail(seg.Pos, GroupControlSyntax, fmt.Sprintf("GS06 %q must be 1-9 digits", c))
	}
}
