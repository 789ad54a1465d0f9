package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "edigw-cli")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "edigw")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		panic(string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// run executes the real binary and returns stdout, stderr and the exit code.
func run(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(errb.String(), "goroutine ") || strings.Contains(errb.String(), "panic") {
		t.Fatalf("stack trace on stderr:\n%s", errb.String())
	}
	return out.String(), errb.String(), code
}

const testdata = "../../edi/testdata/"

func TestAckExitCodes(t *testing.T) {
	cases := []struct {
		name, stdin string
		args        []string
		code        int
		out, errs   string
	}{
		{"valid 004010", "", []string{"x12", "ack", testdata + "valid/850-004010.edi"}, 0, "ST*997*0001~", ""},
		{"valid 005010", "", []string{"x12", "ack", testdata + "valid/856-005010.edi"}, 0, "ST*999*0001*005010X231A1~", ""},
		{"rejected is still acknowledged", "", []string{"x12", "ack", testdata + "defects/iea02-mismatch.edi"}, 0, "*R*001~", ""},
		{"empty", "", []string{"x12", "ack", "-"}, 1, "", "empty input: not X12"},
		{"csv", "sku,qty\nA-1,4\n", []string{"x12", "ack", "-"}, 1, "", "not X12: no ISA segment"},
		{"garbage", "\x00\x01binary junk", []string{"x12", "ack", "-"}, 1, "", "not X12"},
		{"missing file", "", []string{"x12", "ack", "/nonexistent.edi"}, 1, "", "no such file"},
		{"no argument", "", []string{"x12", "ack"}, 2, "", "accepts 1 arg"},
		{"bad flag", "", []string{"x12", "ack", "--nope", "x"}, 2, "", "unknown flag"},
		{"inbound 997 not acked", "", []string{"x12", "ack", testdata + "valid/997-004010.edi"}, 0, "", "no acknowledgement due"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, errs, code := run(t, c.stdin, c.args...)
			if code != c.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, c.code, errs)
			}
			if !strings.Contains(out, c.out) || !strings.Contains(errs, c.errs) {
				t.Errorf("stdout %q\nstderr %q", out, errs)
			}
			if c.code != 0 && out != "" {
				t.Errorf("stdout must be empty on failure: %q", out)
			}
		})
	}
}

func TestAckSeveralInterchanges(t *testing.T) {
	a, _ := os.ReadFile(testdata + "valid/850-004010.edi")
	b, _ := os.ReadFile(testdata + "valid/856-005010.edi")
	out, _, code := run(t, string(a)+string(b), "x12", "ack", "--control", "77", "-")
	if code != 0 || strings.Count(out, "ISA*") != 2 || !strings.Contains(out, "*000000077*") || !strings.Contains(out, "*000000078*") {
		t.Errorf("exit %d:\n%s", code, out)
	}
}

func TestValidateExitCodes(t *testing.T) {
	out, _, code := run(t, "", "x12", "validate", testdata+"valid/810-004010.edi")
	if code != 0 || !strings.Contains(out, "set 810 0001: accepted") {
		t.Errorf("valid file: exit %d\n%s", code, out)
	}
	out, _, code = run(t, "", "x12", "validate", testdata+"defects/el-bad-code.edi")
	if code != 1 || !strings.Contains(out, `element BEG01 (DE 353) error AK403=7`) || !strings.Contains(out, "offset ") {
		t.Errorf("defect: exit %d\n%s", code, out)
	}
	out, _, code = run(t, "", "x12", "validate", testdata+"defects/isa06-unpadded.edi")
	if code != 1 || !strings.Contains(out, "TA1 R 006") {
		t.Errorf("bad ISA: exit %d\n%s", code, out)
	}
}

func TestParseJSON(t *testing.T) {
	out, _, code := run(t, "", "x12", "parse", testdata+"valid/856-004010.edi")
	if code != 0 || !json.Valid([]byte(out)) {
		t.Fatalf("exit %d, JSON valid %v", code, json.Valid([]byte(out)))
	}
	for _, want := range []string{`"HL_S":[{"HL":[{"pos":4,"HL01":"1","HL03":"S"}]`, `"HL_O":[`, `"HL_I":[`, `"status":"accepted"`} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s", want)
		}
	}
	out, _, code = run(t, "", "x12", "parse", testdata+"public/edinet__x12.810a.edi")
	if code != 0 || !json.Valid([]byte(out)) || !strings.Contains(out, `"tolerances":[{"offset":0,"message":"UTF-8 byte order mark before ISA ignored"}`) {
		t.Errorf("exit %d\n%s", code, out)
	}
}
