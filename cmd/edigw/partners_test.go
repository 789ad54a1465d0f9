package main

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

const partnersTestdata = "../../partners/testdata/"

func TestPartnersLint(t *testing.T) {
	t.Run("valid", func(t *testing.T) {
		t.Setenv("BOLT_SFTP_BCRYPT", "$2a$04$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy")
		out, errs, code := run(t, "", "partners", "lint", partnersTestdata+"valid")
		if code != 0 || errs != "" {
			t.Fatalf("exit %d, stderr %q", code, errs)
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[0], "acme (active) isa ZZ/ACMEIND 004010 P; documents: 856 inbound, 810 inbound;") ||
			!strings.HasPrefix(lines[1], "bolt (testing) isa 01/123456789 005010 T;") || !strings.Contains(lines[1], "outbound: push sftp://edi.bolt.example:2022/inbound") {
			t.Errorf("stdout:\n%s", out)
		}
	})
	t.Run("errors", func(t *testing.T) {
		out, errs, code := run(t, "", "partners", "lint", partnersTestdata+"errors/many")
		if code != 1 || out != "" {
			t.Fatalf("exit %d, stdout %q", code, out)
		}
		lines := strings.Split(strings.TrimSuffix(errs, "\n"), "\n")
		pos := regexp.MustCompile(`^\.\./\.\./partners/testdata/errors/many/(acme|bolt)/partner\.yaml:\d+:\d+: `)
		for _, l := range lines {
			if !pos.MatchString(l) {
				t.Errorf("not file:line:col first: %q", l)
			}
		}
		if len(lines) != 12 || !strings.Contains(errs, `acks.functional: "998" is not one of 997, 999, none`) {
			t.Errorf("%d lines:\n%s", len(lines), errs)
		}
	})
	t.Run("secret value never printed", func(t *testing.T) {
		t.Setenv("BOLT_SFTP_BCRYPT", "my-plain-password")
		_, errs, code := run(t, "", "partners", "lint", partnersTestdata+"valid")
		if code != 1 || !strings.Contains(errs, "env BOLT_SFTP_BCRYPT does not hold a bcrypt hash") || strings.Contains(errs, "my-plain-password") {
			t.Errorf("exit %d, stderr %q", code, errs)
		}
	})
	for _, c := range []struct {
		name string
		args []string
		code int
		errs string
	}{
		{"missing dir", []string{"partners", "lint", "/nonexistent/partners"}, 1, "/nonexistent/partners: no such file or directory"},
		{"no argument", []string{"partners", "lint"}, 2, "accepts 1 arg"},
		{"bad flag", []string{"partners", "lint", "--nope", "x"}, 2, "unknown flag"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, errs, code := run(t, "", c.args...)
			if code != c.code || out != "" || !strings.Contains(errs, c.errs) {
				t.Errorf("exit %d, stdout %q, stderr %q", code, out, errs)
			}
		})
	}
}

// partners test passes on the shipped examples and fails with a diff when
// an expectation is wrong; map dry-runs a sample.
func TestPartnersTestAndMap(t *testing.T) {
	const examples = "../../deploy/examples/partners"
	out, errs, code := run(t, "", "partners", "test", examples)
	if code != 0 || !strings.Contains(out, " 0 failed") || strings.Contains(out, "FAIL") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	dir := t.TempDir()
	if b, err := exec.Command("cp", "-r", examples+"/northwind-3pl", dir+"/").CombinedOutput(); err != nil {
		t.Fatal(string(b))
	}
	golden := dir + "/northwind-3pl/testdata/inv_20260316_0600.expected.json"
	data, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(golden, []byte(strings.Replace(string(data), `"onHand": 1250`, `"onHand": 1251`, 1)), 0o644)
	out, _, code = run(t, "", "partners", "test", dir)
	if code != 1 || !strings.Contains(out, "FAIL northwind-3pl csv inventory testdata/inv_20260316_0600.csv") || !strings.Contains(out, "1251") || !strings.Contains(out, "1250") {
		t.Errorf("broken golden: exit %d\n%s", code, out)
	}
	out, _, code = run(t, "", "partners", "test", "--update", dir)
	if code != 0 || !strings.Contains(out, "upd  northwind-3pl") {
		t.Errorf("--update: exit %d\n%s", code, out)
	}
	if b, _ := os.ReadFile(golden); !strings.Contains(string(b), `"onHand": 1250`) {
		t.Errorf("--update did not rewrite the expectation")
	}

	out, errs, code = run(t, "", "map", "--dir", examples, "--partner", "acme", examples+"/acme/testdata/856-two-orders.x12")
	if code != 0 || !strings.Contains(out, `"asnNumber"`) {
		t.Errorf("map: exit %d\n%s\n%s", code, out, errs)
	}
	_, errs, code = run(t, "", "map", "--dir", examples, "--partner", "acme", examples+"/acme/testdata/856-missing-bol.x12")
	if code != 1 || !strings.Contains(errs, "billOfLading: required (HL_S.REF[REF01='BM'].REF02 matched nothing)") {
		t.Errorf("map error: exit %d\n%s", code, errs)
	}
}
