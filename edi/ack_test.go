package edi

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edigw/edigw/edi/spec"
)

var fixedNow = func() time.Time { return time.Date(2024, 3, 15, 12, 0, 0, 0, time.UTC) }

// ackFile runs Process over a file and returns the acknowledgement
// interchanges and the interchanges' results.
func ackFile(t *testing.T, path string) (string, []*Interchange) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return ackBytes(t, data, true)
}

// ackBytes acknowledges data; with selfCheck, the ack must read back clean.
func ackBytes(t *testing.T, data []byte, selfCheck bool) (string, []*Interchange) {
	t.Helper()
	var out bytes.Buffer
	var ics []*Interchange
	ctl := int64(900)
	ao := AckOptions{Now: fixedNow, EOL: "\n", Control: func() (int64, error) { ctl++; return ctl, nil }}
	err := Process(bytes.NewReader(data), Options{OnInterchange: func(ic *Interchange) {
		ics = append(ics, ic)
		if _, err := WriteAck(&out, ic, ao); err != nil {
			t.Fatalf("WriteAck: %v", err)
		}
	}})
	if err != nil {
		t.Fatalf("Process: %v", err)
	}
	// Every ack we write must itself be a valid interchange.
	if out.Len() > 0 && selfCheck {
		var errs []string
		Process(bytes.NewReader(out.Bytes()), Options{
			OnInterchange: func(ic *Interchange) {
				for _, f := range ic.Findings {
					errs = append(errs, f.String())
				}
			},
			OnGroup: func(ic *Interchange, g *Group) {
				if g.Status() != "A" {
					errs = append(errs, "ack group not accepted: "+g.Status())
				}
				for _, s := range g.Sets {
					for _, f := range s.Findings {
						errs = append(errs, f.String())
					}
				}
			},
		})
		if len(errs) > 0 {
			t.Errorf("the acknowledgement itself is invalid:\n%s\n%s", strings.Join(errs, "\n"), out.String())
		}
	}
	return out.String(), ics
}

func TestAckValidFilesAccepted(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid/*.edi")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			ack, ics := ackFile(t, f)
			if len(ics) != 1 || ics[0].Rejected() {
				t.Fatalf("interchange rejected: %+v", ics[0].Findings)
			}
			for _, g := range ics[0].Groups {
				for _, s := range g.Sets {
					for _, fd := range s.Findings {
						t.Errorf("finding on a valid file: %s", fd)
					}
				}
				if g.Status() != "A" {
					t.Errorf("group %s: AK9 %s %+v", g.Control, g.Status(), g.Findings)
				}
			}
			is999 := strings.Contains(f, "005010")
			isFA := strings.HasPrefix(filepath.Base(f), "99")
			switch {
			case isFA:
				if ack != "" {
					t.Errorf("an inbound 997/999 must not be acknowledged, got\n%s", ack)
				}
			case is999:
				mustContain(t, ack, "GS*FA*DISTRIB*SUPPLIERX*20240315*1200*901*X*005010X231A1~", "ST*999*0001*005010X231A1~", "IK5*A~", "AK9*A*")
				if strings.Contains(ack, "AK5") {
					t.Error("999 uses IK5, not AK5")
				}
			default:
				mustContain(t, ack, "ISA*00*          *00*          *ZZ*DISTRIB        *ZZ*SUPPLIERX      *240315*1200*U*00401*000000901*0*P*>~",
					"GS*FA*DISTRIB*SUPPLIERX*20240315*1200*901*X*004010~", "ST*997*0001~", "AK5*A~", "AK9*A*", "IEA*1*000000901~")
				if strings.Contains(ack, "TA1") {
					t.Error("no TA1 is due when ISA14=0 and the envelope is good")
				}
			}
		})
	}
}

func mustContain(t *testing.T, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("missing %q in\n%s", sub, s)
		}
	}
}

// Each defect class gives its exact codes. Positions count from ST = 1.
var defectCases = map[string]struct {
	want, notWant []string
	// echoesInvalid marks acks that must echo a value the partner got wrong
	// (its ISA13, qualifier or GS01), so the ack itself cannot be clean.
	echoesInvalid bool
}{
	// Interchange envelope: TA1 R with the note code, nothing inside acknowledged.
	"isa06-unpadded":                 {want: []string{"TA1*000000101*240315*1200*R*006~"}, notWant: []string{"GS*FA"}},
	"isa09-bad-date":                 {want: []string{"TA1*000000101*241399*1200*R*014~"}, notWant: []string{"GS*FA"}},
	"isa10-bad-time":                 {want: []string{"TA1*000000101*240315*2561*R*015~"}},
	"isa12-bad-version":              {want: []string{"*R*017~"}},
	"isa13-not-numeric":              {want: []string{"TA1*00000010A*240315*1200*R*018~"}, echoesInvalid: true},
	"isa14-bad":                      {want: []string{"*R*019~"}},
	"isa15-bad":                      {want: []string{"*R*020~"}},
	"isa01-bad-qualifier":            {want: []string{"*R*010~"}},
	"isa05-bad-qualifier":            {want: []string{"*R*005~", "*Z1*SUPPLIERX      *"}, echoesInvalid: true},
	"isa11-not-U-in-004010":          {want: []string{"*R*016~"}},
	"isa16-equals-element-separator": {want: []string{"*R*027~"}},
	"isa14-ack-requested":            {want: []string{"TA1*000000101*240315*1200*A*000~", "GS*FA*", "AK9*A*1*1*1~"}},
	"iea02-mismatch":                 {want: []string{"*R*001~"}, notWant: []string{"GS*FA"}},
	"iea01-count":                    {want: []string{"*R*021~"}},
	"iea-missing":                    {want: []string{"*R*023~"}},
	"truncated-in-set":               {want: []string{"*R*023~"}},
	"segment-outside-group":          {want: []string{"*R*024~"}},
	// Functional group: AK9 R with the 716 code.
	"ge02-mismatch":    {want: []string{"AK5*A~", "AK9*R*1*1*0*4~"}, notWant: []string{"TA1"}},
	"ge01-count":       {want: []string{"AK9*R*3*1*0*5~"}},
	"ge-missing":       {want: []string{"AK9*R*1*1*0*3~"}},
	"gs08-unsupported": {want: []string{"AK1*PO*101~", "AK9*R*1*1*0*2~"}, notWant: []string{"AK2"}},
	"gs01-unknown":     {want: []string{"AK1*Q9*101~", "AK9*R*1*1*0*1~"}, echoesInvalid: true},
	"gs06-duplicate":   {want: []string{"AK9*A*1*1*1~", "AK9*R*1*1*0*19~"}},
	// Transaction set: AK5 R with the 718 code.
	"se01-count":       {want: []string{"AK2*850*0001~", "AK5*R*4~", "AK9*R*1*1*0~"}},
	"se02-mismatch":    {want: []string{"AK5*R*3~"}},
	"se-missing":       {want: []string{"AK5*R*2~"}},
	"st01-unsupported": {want: []string{"AK2*830*0001~", "AK5*R*1~"}},
	"st01-wrong-group": {want: []string{"AK1*SH*101~", "AK2*850*0001~", "AK5*R*6~"}},
	"st02-duplicate":   {want: []string{"AK5*A~", "AK5*R*23~", "AK9*P*2*2*1~"}},
	"st02-too-short":   {want: []string{"AK2*850*01~", "AK5*R*7~"}, notWant: []string{"AK3"}, echoesInvalid: true},
	// Segments: AK3 with the 720 code.
	"seg-unrecognized":      {want: []string{"AK3*ZZZ*4**1~", "AK5*R*5~"}},
	"seg-lowercase-tag":     {want: []string{"AK3*ref*3**1~"}},
	"seg-not-in-set":        {want: []string{"AK3*BSN*4**6~"}},
	"seg-unexpected":        {want: []string{"AK3*PO4*4**2~"}},
	"seg-mandatory-missing": {want: []string{"AK3*BEG*2**3~"}},
	"seg-loop-over-max":     {want: []string{"AK3*CTT*13*CTT*4~"}},
	"seg-over-max-use":      {want: []string{"AK3*BEG*3**5~"}},
	"seg-out-of-sequence":   {want: []string{"AK3*REF*4**7~"}},
	// Elements: AK3 code 8 and AK4 with the 723 code and a copy of the value.
	"el-mandatory-missing":   {want: []string{"AK3*BEG*2**8~", "AK4*3*324*1~"}},
	"el-bad-code":            {want: []string{"AK4*1*353*7*99~"}},
	"el-too-long":            {want: []string{"AK4*3*324*5*PO-4501-ABCDEFGHIJKLMNOPQRS~"}},
	"el-too-short":           {want: []string{"AK3*DTM*4**8~", "AK4*2*373*4*2024040~"}},
	"el-bad-character":       {want: []string{"AK3*PO1*11*PO1*8~", "AK4*2*330*6*1O~"}},
	"el-bad-date":            {want: []string{"AK4*2*373*8*20240231~"}},
	"el-bad-time":            {want: []string{"AK4*3*337*9*2561~"}},
	"el-too-many":            {want: []string{"AK3*N3*6*N1*8~", "AK4*3**3*EXTRA~"}},
	"el-conditional-missing": {want: []string{"AK3*N1*8*N1*8~", "AK4*4*67*2~"}},
	"el-exclusion":           {want: []string{"AK3*MEA*11*PID*8~", "AK4*3*739*10*10~"}},
	"el-lowercase-data":      {want: []string{"AK5*A~", "AK9*A*1*1*1~"}},
	"el-non-ascii":           {want: []string{"AK4*5*352*6~"}},
	// 005010: the same classes in a 999.
	"v5-el-bad-code":          {want: []string{"ST*999*0001*005010X231A1~", "AK1*PO*102*005010~", "IK3*BEG*2**8~", "IK4*1*353*7*99~", "IK5*R*5~", "AK9*P*2*2*1~"}},
	"v5-too-many-repetitions": {want: []string{"IK4*2*127*12~"}},
	"v5-too-many-components":  {want: []string{"IK4*2*127*13~"}},
	"v5-se01-count":           {want: []string{"IK5*R*4~", "AK9*P*2*2*1~"}},
	// 856 hierarchy.
	"hl-dangling-parent": {want: []string{"AK3*HL*20*HL*8~", "AK4*2*734*7*9~"}},
	"hl-duplicate-id":    {want: []string{"AK4*1*628*7*5~"}},
}

func TestAckDefectClasses(t *testing.T) {
	files, _ := filepath.Glob("testdata/defects/*.edi")
	if len(files) != len(defectCases) {
		t.Errorf("%d defect files, %d cases", len(files), len(defectCases))
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".edi")
		c, ok := defectCases[name]
		if !ok {
			t.Errorf("no expectation for %s", f)
			continue
		}
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			ack, _ := ackBytes(t, data, !c.echoesInvalid)
			mustContain(t, ack, c.want...)
			for _, n := range c.notWant {
				if strings.Contains(ack, n) {
					t.Errorf("unexpected %q in\n%s", n, ack)
				}
			}
		})
	}
}

// A 005010 partner whose policy is 997 gets a 997 (with AK103), and the
// other way round.
func TestAckPolicyOverride(t *testing.T) {
	data, _ := os.ReadFile("testdata/valid/855-005010.edi")
	var out bytes.Buffer
	Process(bytes.NewReader(data), Options{OnInterchange: func(ic *Interchange) {
		WriteAck(&out, ic, AckOptions{Now: fixedNow, Functional: "997", Control: func() (int64, error) { return 5, nil }})
	}})
	mustContain(t, out.String(), "GS*FA*DISTRIB*SUPPLIERX*20240315*1200*5*X*005010~", "ST*997*0001~", "AK1*PR*104*005010~", "AK5*A~")
}

// A partner's guide overlay (spec.Dictionary.Apply) is validated like the
// standard: here BEG02 is restricted to SA and REF is made mandatory.
func TestPartnerOverlay(t *testing.T) {
	set, err := spec.Default("004010").Apply(spec.Overlay{Set: "850", Rules: []spec.OverlayRule{
		{Segment: "BEG", Element: 2, Codes: []string{"SA"}},
		{Segment: "CUR", Usage: spec.Mandatory},
	}})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile("testdata/valid/850-004010.edi")
	data = bytes.Replace(data, []byte("BEG*00*SA*"), []byte("BEG*00*DS*"), 1)
	var out bytes.Buffer
	err = Process(bytes.NewReader(data), Options{
		Set: func(family, id string) *spec.Set {
			if family == "004010" && id == "850" {
				return set
			}
			return spec.Default(family).Set(id)
		},
		OnInterchange: func(ic *Interchange) {
			WriteAck(&out, ic, AckOptions{Now: fixedNow, Control: func() (int64, error) { return 1, nil }})
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out.String(), "AK4*2*92*7*DS~", "AK3*CUR*3**3~", "AK5*R*5~")
	// The shared dictionary is untouched.
	out.Reset()
	Process(bytes.NewReader(data), Options{OnInterchange: func(ic *Interchange) {
		WriteAck(&out, ic, AckOptions{Now: fixedNow, Control: func() (int64, error) { return 1, nil }})
	}})
	mustContain(t, out.String(), "AK5*A~")
}

// A value echoed into an ack that must be masked is masked with a byte that
// is not itself one of the ack's delimiters: here '?' is the component
// separator and ISA13 is a non-printable byte (found by FuzzAck).
func TestAckMaskAvoidsDelimiters(t *testing.T) {
	var out bytes.Buffer
	var err error
	Process(strings.NewReader("ISA*************\xa5***?!"), Options{OnInterchange: func(ic *Interchange) {
		_, err = WriteAck(&out, ic, AckOptions{Now: fixedNow, Control: func() (int64, error) { return 1, nil }})
	}})
	if err != nil {
		t.Fatalf("WriteAck: %v", err)
	}
	if !strings.Contains(out.String(), "!TA1*_*") {
		t.Errorf("TA101 not masked with '_':\n%q", out.String())
	}
}

// A repetition separator above 0x7F is written as that one byte in ISA11,
// not as its UTF-8 encoding (found by FuzzAck: the ack could not be written).
// The segment terminator here is the newline, so the ISA line is 105 bytes.
func TestAckHighRepetitionSeparator(t *testing.T) {
	in := "ISA*00*0000000000*00*0000000000*ZZ*000000000000000*ZZ*000000000000000*000101*0000*\xf7*00700*000000102*0*T*!\nGS**00*00*00000101*0000**X*005\nIEA*1*102"
	var out bytes.Buffer
	var err error
	Process(strings.NewReader(in), Options{OnInterchange: func(ic *Interchange) {
		_, err = WriteAck(&out, ic, AckOptions{Now: fixedNow, Control: func() (int64, error) { return 1, nil }})
	}})
	if err != nil {
		t.Fatalf("WriteAck: %v", err)
	}
	if isa, _, _ := strings.Cut(out.String(), "\n"); len(isa) != 105 || isa[82] != 0xf7 {
		t.Errorf("ack ISA: %q, want 0xF7 as ISA11", isa)
	}
}
