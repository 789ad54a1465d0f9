package edi

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The public samples (testdata/public, sources and licences in SOURCES.md)
// and what each must produce. Several are broken on purpose or by accident;
// the reasons are in SOURCES.md and restated here.
var publicCases = map[string]struct {
	ta1     string   // TA104/TA105 of the (first) interchange
	ack     []string // segments the acknowledgement must contain
	noAck   bool     // nothing is due (functional acks, ISA14=0)
	finding []string // substrings of findings that must be reported
	// echoesInvalid: the ack must echo an ID the partner padded with NBSP,
	// so the ack itself cannot be clean.
	echoesInvalid bool
}{
	// UTF-8 BOM, tabs, unpadded ISA fields: ISA02 is the first bad field.
	"edinet__x12.810a.edi": {ta1: "R 011", ack: []string{"TA1*000000001*030910*1059*R*011~"}},
	// ISA16 is missing, so by position the component separator is '~' and
	// the terminator LF: every GE/SE/IEA control number ends in the
	// component separator (the last IEA, lacking its LF, is still read).
	"edinet__x12.850.issue135.edi": {ta1: "R 001", finding: []string{`GE02 "1~" does not match GS06 "1"`, `IEA02 "000000001~" does not match ISA13`}},
	// NBSP padding makes ISA02 12 bytes; its IEA02 also differs from ISA13.
	"edinet__x12.850a.edi":  {ta1: "R 011", finding: []string{`IEA02 "000000001" does not match ISA13 "000000055"`}, echoesInvalid: true},
	"node-x12__850.edi":     {ta1: "A 000", ack: []string{"AK1*PO*1421~", "AK2*850*000000010~", "AK5*A~", "AK9*A*1*1*1~"}},
	"node-x12__850_2.edi":   {ta1: "A 000", ack: []string{"AK9*A*1*1*1\n"}}, // LF is the terminator
	"node-x12__850_3.edi":   {ta1: "A 000", ack: []string{"AK9*A*1*1*1\n"}},
	"node-x12__850_fat.edi": {ta1: "A 000", ack: []string{"AK9*A*1*1*1~"}},
	// REF01 "ZZZ" is not a code of data element 128.
	"node-x12__855.edi": {ta1: "A 000", ack: []string{"AK3*REF*4**8~", "AK4*1*128*7*ZZZ~", "AK9*R*1*1*0~"}},
	// 00406 makes ISA11 '-' the repetition separator, and the data uses '-'
	// (REF02, N403): those elements repeat where repetition is not allowed.
	"node-x12__856.edi": {ta1: "A 000", ack: []string{"AK3*REF*6*HL*8~", "AK4*2*127*6*999999-001~", "AK3*N4*14*N1*8~", "AK9*R*1*1*0~"}},
	// Inbound 997: validated (AK101 and AK402 are wrong), not acknowledged.
	"staedi__invalid997.edi": {ta1: "A 000", noAck: true, finding: []string{`AK101 "HC NOT IN CODESET"`, `AK402 "66 NON NUMERIC" is not a number`}},
	// The PO group is version 003010, which edigw does not read.
	"staedi__invoice810_po850_dual.edi":           {ta1: "A 000", ack: []string{"AK1*IN*1~", "AK9*A*2*2*2~", "AK1*PO*165~", "AK9*R*1*1*0*2~"}},
	"staedi__issue590-multi-tx-855.edi":           {ta1: "A 000", ack: []string{"AK9*A*2*2*2~"}},
	"staedi__simple810.edi":                       {ta1: "A 000", ack: []string{"AK9*A*2*2*2~"}},
	"staedi__simple997-multiple-interchanges.edi": {ta1: "A 000", noAck: true},
	"staedi__simple997.edi":                       {ta1: "A 000", noAck: true},
	"staedi__simple999.edi":                       {ta1: "A 000", noAck: true},
	"stedi-bootstrap__5010-855-inbound.edi":       {ta1: "A 000", ack: []string{"ST*999*0001*005010X231A1~", "IK5*A~", "AK9*A*1*1*1~"}},
	// ISA06 is 12 characters (ISA is 103): a TA1 even for a functional ack.
	"stupidedi__004010-FA997-pass-1.edi": {ta1: "R 006", ack: []string{"TA1*300044350*131003*0004*R*006\n"}},
	"stupidedi__004010-PR855-pass-1.edi": {ta1: "A 000", ack: []string{"AK9*A*1*1*1~"}},
	// Terminator '$', but three segments end in "~\n", so they merge into N1:
	// the HL*2 inside is lost (HL*3's parent dangles) and SE01 is off.
	"stupidedi__004010-SH856-fail-2.edi": {ta1: "A 000", ack: []string{"AK4*2*734*7*2$", "AK5*R*4*5$", "AK9*R*1*1*0$"},
		finding: []string{`SE01 "25" but 22 segments counted`}},
}

func TestPublicCorpus(t *testing.T) {
	files, _ := filepath.Glob("testdata/public/*.edi")
	if len(files) != 20 || len(publicCases) != 20 {
		t.Fatalf("%d files, %d cases", len(files), len(publicCases))
	}
	for _, f := range files {
		name := filepath.Base(f)
		c, ok := publicCases[name]
		if !ok {
			t.Errorf("no expectation for %s", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			ack, ics := ackBytes(t, data, !c.echoesInvalid)
			if len(ics) == 0 {
				t.Fatal("no interchange")
			}
			a, note := TA1Code(ics[0])
			if got := a + " " + note; got != c.ta1 {
				t.Errorf("TA1 %s, want %s (%v)", got, c.ta1, ics[0].Findings)
			}
			if c.noAck != (ack == "") {
				t.Errorf("ack due = %v, want %v:\n%s", ack != "", !c.noAck, ack)
			}
			mustContain(t, ack, c.ack...)
			var all []string
			for _, ic := range ics {
				for _, f := range ic.Findings {
					all = append(all, f.String())
				}
				for _, g := range ic.Groups {
					for _, f := range g.Findings {
						all = append(all, f.String())
					}
					for _, s := range g.Sets {
						for _, f := range s.Findings {
							all = append(all, f.String())
						}
					}
				}
			}
			mustContain(t, strings.Join(all, "\n"), c.finding...)
		})
	}
}
