package mapping

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/edigw/edigw/edi"
)

// typical850 is a 20-line purchase order like the ones partners send.
func typical850() []byte {
	var b strings.Builder
	b.WriteString("ISA*00*          *00*          *ZZ*CUSTOMER       *ZZ*DISTRIB        *240315*1200*U*00401*000000101*0*P*>~\n")
	b.WriteString("GS*PO*CUSTOMER*DISTRIB*20240315*1200*101*X*004010~\nST*850*0001~\nBEG*00*SA*PO-4501**20240315~\nCUR*BY*USD~\nREF*DP*042~\n")
	b.WriteString("DTM*002*20240401~\nN1*ST*DISTRIBUTION CENTER 7*92*DC07~\nN3*100 MAIN STREET~\nN4*SPRINGFIELD*IL*62701*US~\nN1*BT*ACME DISTRIBUTION*92*HQ~\n")
	segs := 9 // ST through the second N1
	for i := 1; i <= 20; i++ {
		fmt.Fprintf(&b, "PO1*%d*%d*EA*%d.25*PE*UP*0123456789%02d*VN*ABC-%d*BP*B-%d~\nPID*F****WIDGET NUMBER %d~\n", i, i*3, i, i, i, i, i)
		segs += 2
	}
	fmt.Fprintf(&b, "CTT*20*630~\nSE*%d*0001~\nGE*1*101~\nIEA*1*000000101~\n", segs+2)
	return []byte(b.String())
}

func load850(b *testing.B) *Map {
	m, err := LoadFile("testdata/po-850-in.yaml")
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkMap850 maps an already parsed 20-line 850 and renders the JSON
// (schema validation included, as the gateway does it).
func BenchmarkMap850(b *testing.B) {
	m := load850(b)
	onTree(b, func(tree *edi.Node) error {
		doc, _, err := m.MapX12(tree, Env{})
		if err == nil {
			_, err = Marshal(doc)
		}
		return err
	})
}

// onTree parses the typical 850 once and times fn on its tree b.N times,
// reporting documents per second.
func onTree(b *testing.B, fn func(tree *edi.Node) error) {
	b.Helper()
	edi.Process(bytes.NewReader(typical850()), edi.Options{Tree: true, OnSet: func(ic *edi.Interchange, g *edi.Group, s *edi.Set) {
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := fn(s.Tree); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "docs/s")
	}})
}

// BenchmarkParseMap850 is the whole path: X12 bytes → parse, validate,
// tree → canonical JSON.
func BenchmarkParseMap850(b *testing.B) {
	m := load850(b)
	data := typical850()
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for i := 0; i < b.N; i++ {
		err := edi.Process(bytes.NewReader(data), edi.Options{Tree: true, OnSet: func(ic *edi.Interchange, g *edi.Group, s *edi.Set) {
			if len(s.Findings) > 0 {
				b.Fatal(s.Findings)
			}
			doc, _, err := m.MapX12(s.Tree, Env{})
			if err != nil {
				b.Fatal(err)
			}
			Marshal(doc)
		}})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "docs/s")
}

// BenchmarkValidateOnly is the JSON Schema check of the mapped 850 alone
// (the gateway runs it on every document).
func BenchmarkValidateOnly(b *testing.B) {
	m := load850(b)
	var doc Document
	edi.Process(bytes.NewReader(typical850()), edi.Options{Tree: true, OnSet: func(ic *edi.Interchange, g *edi.Group, s *edi.Set) {
		doc, _, _ = m.MapX12(s.Tree, Env{})
	}})
	onTree(b, func(*edi.Node) error { return ValidateDocument("purchase-order.v1", doc) })
}

// BenchmarkMapOnlyNoSchema is the mapping alone: tree to Document.
func BenchmarkMapOnlyNoSchema(b *testing.B) {
	m := load850(b)
	m.Target.Schema = ""
	onTree(b, func(tree *edi.Node) error {
		_, _, err := m.MapX12(tree, Env{})
		return err
	})
}

// BenchmarkMapToJSON is the figure: a parsed 20-line 850 mapped to
// canonical JSON bytes (the JSON Schema check is measured apart, above).
func BenchmarkMapToJSON(b *testing.B) {
	m := load850(b)
	m.Target.Schema = ""
	onTree(b, func(tree *edi.Node) error {
		doc, _, err := m.MapX12(tree, Env{})
		if err == nil {
			_, err = Marshal(doc)
		}
		return err
	})
}
