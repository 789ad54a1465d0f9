package mapping

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/edigw/edigw/edi"
	"github.com/google/go-cmp/cmp"
)

// TestResult is the outcome of one test of a mapping.
type TestResult struct {
	Map     *Map
	Test    Test
	Pass    bool
	Diff    string // expected vs got, when the output differs
	Err     error  // unexpected error, or the expected error that did not come
	Updated bool   // the expectation file was rewritten (--update)
}

// TestOptions tune RunTests.
type TestOptions struct {
	Update   bool      // rewrite expectation files with the output
	Envelope *Envelope // outbound: envelope for the X12 written (default TestEnvelope)
}

// TestEnvelope is the fixed envelope outbound tests write with, so that the
// expected X12 stays byte-for-byte stable.
func TestEnvelope(m *Map) Envelope {
	ver := "00401"
	if strings.HasPrefix(m.Target.Version, "005") {
		ver = "00501"
	}
	return Envelope{
		Interchange: edi.ISAHeader{SenderQualifier: "ZZ", SenderID: "EDIGW", ReceiverQualifier: "ZZ", ReceiverID: strings.ToUpper(m.Partner),
			Date: "240101", Time: "1200", Version: ver, Control: 1, Usage: "T"},
		Group: edi.GSHeader{FunctionalID: "PO", Sender: "EDIGW", Receiver: strings.ToUpper(m.Partner), Date: "20240101", Time: "1200",
			Control: 1, Version: m.Target.Version},
		SetControl: "0001",
		Delimiters: edi.DefaultDelimiters,
		EOL:        "\n",
	}
}

// RunTests runs the mapping's tests: each input is mapped and compared with
// its expected output, or must fail with the expected error.
func (m *Map) RunTests(opt TestOptions) []TestResult {
	var res []TestResult
	dir := filepath.Dir(m.File)
	for _, t := range m.Tests {
		r := TestResult{Map: m, Test: t}
		got, err := m.runInput(filepath.Join(dir, t.Input), opt)
		switch {
		case t.ExpectError != "":
			if err == nil {
				r.Err = fmt.Errorf("expected an error containing %q, got none", t.ExpectError)
			} else if !strings.Contains(err.Error(), t.ExpectError) {
				r.Err = fmt.Errorf("expected an error containing %q, got:\n%v", t.ExpectError, err)
			} else {
				r.Pass = true
			}
		case err != nil:
			r.Err = err
		default:
			r.Pass, r.Diff, r.Err = compare(filepath.Join(dir, t.Expect), got, m.Target.Format == "x12")
			if !r.Pass && opt.Update {
				if werr := os.WriteFile(filepath.Join(dir, t.Expect), got, 0o644); werr != nil {
					r.Err = werr
				} else {
					r.Pass, r.Updated, r.Diff, r.Err = true, true, "", nil
				}
			}
		}
		res = append(res, r)
	}
	return res
}

// runInput maps one input file and renders the output (indented JSON, or
// the X12 text).
func (m *Map) runInput(path string, opt TestOptions) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	env := Env{FileName: filepath.Base(path), Partner: m.Partner}
	switch {
	case m.Direction == "outbound":
		var doc map[string]any
		dec := json.NewDecoder(f)
		dec.UseNumber()
		if err := dec.Decode(&doc); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		e := TestEnvelope(m)
		if opt.Envelope != nil {
			e = *opt.Envelope
		}
		var out bytes.Buffer
		if err := m.Outbound(doc, e, &out); err != nil {
			return nil, err
		}
		return out.Bytes(), nil
	case m.Source.Format == "csv":
		doc, _, err := m.MapCSV(f, env)
		if err != nil {
			return nil, err
		}
		return renderJSON(doc)
	}
	docs, _, err := m.MapFile(f, env)
	if err != nil {
		return nil, err
	}
	if len(docs) == 1 {
		return renderJSON(docs[0])
	}
	return renderJSON(docs)
}

// MapFile parses an X12 file and maps every transaction set of the
// mapping's type. A set the X12 validator rejects is an error (the gateway
// never maps rejected sets either).
func (m *Map) MapFile(f *os.File, env Env) ([]Document, []string, error) {
	var docs []Document
	var warns []string
	var errs []error
	err := edi.Process(f, edi.Options{Tree: true, OnSet: func(ic *edi.Interchange, g *edi.Group, s *edi.Set) {
		if s.ID != m.Source.Transaction {
			return
		}
		if s.Status == "R" || len(s.Findings) > 0 {
			for _, fd := range s.Findings {
				errs = append(errs, fmt.Errorf("%s: X12 set %s %s rejected: %s", env.FileName, s.ID, s.Control, fd))
			}
			if len(s.Findings) == 0 {
				errs = append(errs, fmt.Errorf("%s: X12 set %s %s rejected (group %s)", env.FileName, s.ID, s.Control, g.Control))
			}
			return
		}
		doc, w, err := m.MapX12(s.Tree, env)
		warns = append(warns, w...)
		if err != nil {
			errs = append(errs, err)
			return
		}
		docs = append(docs, doc)
	}, OnInterchange: func(ic *edi.Interchange) {
		for _, fd := range ic.Findings {
			errs = append(errs, fmt.Errorf("%s: interchange %s rejected: %s", env.FileName, ic.Control, fd))
		}
	}})
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return docs, warns, errors.Join(errs...)
	}
	if len(docs) == 0 {
		return nil, warns, fmt.Errorf("%s: no %s transaction set in the file", env.FileName, m.Source.Transaction)
	}
	return docs, warns, nil
}

func renderJSON(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// compare checks got against the expectation file and explains differences.
func compare(path string, got []byte, raw bool) (bool, string, error) {
	want, err := os.ReadFile(path)
	if err != nil {
		return false, "", err
	}
	if raw {
		if bytes.Equal(want, got) {
			return true, "", nil
		}
		return false, cmp.Diff(strings.Split(string(want), "\n"), strings.Split(string(got), "\n")), nil
	}
	var w, g any
	if err := json.Unmarshal(want, &w); err != nil {
		return false, "", fmt.Errorf("%s: %w", path, err)
	}
	if err := json.Unmarshal(got, &g); err != nil {
		return false, "", err
	}
	if d := cmp.Diff(w, g); d != "" {
		return false, "(-expected +got)\n" + d, nil
	}
	return true, "", nil
}
