package main

import (
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
