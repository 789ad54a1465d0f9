package partners

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edigw/edigw/edi"
	"github.com/edigw/edigw/edi/spec"
	"golang.org/x/crypto/bcrypt"
)

func loadValid(t *testing.T) *Set {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("BOLT_SFTP_BCRYPT", string(hash)) // present: its content is checked
	s, err := LoadDir("testdata/valid")
	if err != nil {
		t.Fatalf("valid tree:\n%v", err)
	}
	return s
}

func TestLoadValid(t *testing.T) {
	s := loadValid(t)
	var ids []string
	for _, p := range s.Partners() {
		ids = append(ids, p.ID)
	}
	if !slices.Equal(ids, []string{"acme", "bolt"}) || s.Len() != 2 {
		t.Fatalf("partners %v", ids)
	}

	acme := s.ByID("acme")
	if acme == nil || acme.Name != "ACME Industrial Supply" || acme.Status != StatusActive || acme.Dir != filepath.Join("testdata/valid", "acme") {
		t.Fatalf("acme: %+v", acme)
	}
	x := acme.X12
	if x.ISA != (ISAID{"ZZ", "ACMEIND"}) || x.GSID != "ACMEIND" || x.Version != "004010" || x.Usage != "P" || !x.OurISA.IsZero() {
		t.Errorf("acme x12 %+v", x)
	}
	if x.Delimiters != (edi.Delimiters{Element: '*', Component: '>', Segment: '~'}) || !x.Newline {
		t.Errorf("acme delimiters %+v newline %v", x.Delimiters, x.Newline)
	}
	if want := (Acks{Functional: Ack997, TA1: TA1OnError, DuplicateWindow: 1440 * time.Hour, ExpectAckWithin: 24 * time.Hour}); acme.Acks != want {
		t.Errorf("acme acks %+v, want %+v", acme.Acks, want)
	}
	u := acme.Inbound.SFTP[0]
	wantNets := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.20.0.0/16"), netip.MustParsePrefix("192.0.2.7/32")}
	if u.User != "acme" || len(u.PublicKeys) != 1 || u.PublicKeys[0].Type() != "ssh-ed25519" || !slices.Equal(u.AllowedNetworks, wantNets) ||
		u.MaxSessions != DefaultMaxSessions || !u.PasswordHash.IsZero() || u.LegacyAlgorithms {
		t.Errorf("acme sftp user %+v", u)
	}
	if !u.Allowed(netip.MustParseAddr("10.20.3.4")) || !u.Allowed(netip.MustParseAddr("::ffff:127.0.0.1")) || u.Allowed(netip.MustParseAddr("10.21.0.1")) {
		t.Error("acme allowed networks")
	}

	ftp := acme.Inbound.Polls[0]
	if ftp.Name != "acme-ftp" || ftp.URL != (Endpoint{Scheme: "ftps", Host: "edi.acme.example", Port: 990, Path: "/outbound"}) ||
		ftp.Username != "edigw" || ftp.Password.Env != "ACME_FTP_PASSWORD" || ftp.CAFile != "certs/acme-ca.pem" ||
		ftp.Location.String() != "America/Chicago" || ftp.Jitter != 30*time.Second || ftp.Pattern != "*.edi" ||
		ftp.StableFor != DefaultStableFor || ftp.TriggerSuffix != "" || ftp.AfterFetch != (AfterFetch{FetchMove, "/outbound/done"}) || ftp.MaxFiles != 50 {
		t.Errorf("acme-ftp %+v", ftp)
	}
	// The schedule runs in the poll's time zone: every 5 minutes at second 0.
	from := time.Date(2026, 3, 8, 7, 58, 30, 0, time.UTC) // 01:58:30 in Chicago, before the DST jump
	if next := ftp.Cron.Next(from); !next.Equal(time.Date(2026, 3, 8, 8, 0, 0, 0, time.UTC)) {
		t.Errorf("acme-ftp next run %v", next)
	}
	sftp := acme.Inbound.Polls[1]
	if sftp.URL != (Endpoint{Scheme: "sftp", Host: "127.0.0.1", Port: 2222, Path: "/out"}) || sftp.PrivateKey.File != "/run/secrets/acme_sftp_key" ||
		sftp.KnownHostsFile != "keys/known_hosts" || sftp.HostKey != "" || sftp.StableFor != 0 || sftp.TriggerSuffix != ".done" ||
		sftp.AfterFetch.Action != FetchKeep || sftp.MaxFiles != DefaultMaxFiles || sftp.Pattern != "*" || sftp.Location != time.UTC {
		t.Errorf("acme-sftp %+v", sftp)
	}
	if acme.Outbound != (Outbound{Channel: ChannelOutbox, Naming: DefaultNaming}) {
		t.Errorf("acme outbound %+v", acme.Outbound)
	}
	d := acme.X12Document("856", DirectionInbound)
	if d == nil || d.Format != FormatX12 || d.MapFile != "maps/856.yaml" || d.Map == nil || d.ERP != "ship-notices" {
		t.Errorf("acme 856 %+v", d)
	}
	if acme.X12Document("856", DirectionOutbound) != nil || acme.CSVDocument("inv_1.csv") != nil {
		t.Error("acme has no outbound 856 and no csv feed")
	}

	// The overlay is applied to the partner's copy of the 856 only.
	ov := acme.Sets["856"]
	if ov == nil || acme.TransactionSet("856") != ov || len(acme.Overlays) != 1 || len(acme.Overlays[0].Rules) != 3 {
		t.Fatalf("acme overlays %+v", acme.Overlays)
	}
	if got := refMax(ov); got != 30 {
		t.Errorf("overlaid REF02 max %d, want 30", got)
	}
	if std := acme.TransactionSet("810"); std == nil || std.ID != "810" || std.Version != "004010" {
		t.Errorf("standard 810: %+v", std)
	}
	if got := refMax(s.ByID("bolt").TransactionSet("856")); got == 30 {
		t.Error("the overlay leaked into the shared dictionary")
	}

	bolt := s.ByISA("01", "123456789      ") // as found in ISA06, space-padded
	if bolt == nil || bolt.ID != "bolt" || bolt.Status != StatusTesting {
		t.Fatalf("ByISA: %v", bolt)
	}
	bx := bolt.X12
	if bx.OurISA != (ISAID{"ZZ", "DISTRIB"}) || bx.OurGSID != "DISTRIB" || bx.Delimiters != edi.DefaultDelimiters || bx.Usage != "T" {
		t.Errorf("bolt x12 %+v", bx)
	}
	if want := (Acks{Functional: Ack999, TA1: TA1Always, DuplicateWindow: DefaultDuplicateWindow, ExpectAckWithin: 4 * time.Hour}); bolt.Acks != want {
		t.Errorf("bolt acks %+v", bolt.Acks)
	}
	p, bu := s.BySFTPUser("bolt")
	if p != bolt || bu.PasswordHash.Env != "BOLT_SFTP_BCRYPT" || len(bu.PublicKeys) != 2 || bu.PublicKeysFile != "keys/bolt.pub" || bu.MaxSessions != 2 {
		t.Errorf("bolt user %+v", bu)
	}
	if !strings.Contains(bu.PasswordHash.Field, "inbound.sftp[0].password_hash_env") {
		t.Errorf("secret field %q", bu.PasswordHash.Field)
	}
	_, legacy := s.BySFTPUser("bolt-legacy")
	if legacy == nil || !legacy.LegacyAlgorithms || legacy.PasswordHash.File != "/run/secrets/bolt_legacy_bcrypt" ||
		!legacy.Allowed(netip.MustParseAddr("2001:db8::7")) || legacy.Allowed(netip.MustParseAddr("10.0.0.1")) {
		t.Errorf("bolt-legacy %+v", legacy)
	}
	if p, u := s.BySFTPUser("nobody"); p != nil || u != nil {
		t.Error("unknown user found")
	}
	push := bolt.Outbound.Push
	if bolt.Outbound.Channel != ChannelPush || push == nil || push.URL.String() != "sftp://edi.bolt.example:2022/inbound" ||
		push.Username != "distrib" || push.PrivateKey.Env != "BOLT_PUSH_KEY" || push.HostKey != "SHA256:94K44++OU9Q4CJcpfjsKQ1G5jA6g25B3u1yiMYare80" ||
		bolt.Outbound.Naming != "{partner}_{type}_{date}{time}_{control}.{ext}" {
		t.Errorf("bolt outbound %+v %+v", bolt.Outbound, push)
	}
	if d := bolt.X12Document("850", DirectionOutbound); d == nil || d.ERP != "" {
		t.Errorf("bolt 850 out %+v", d)
	}
	if d := bolt.CSVDocument("inv_20261127.csv"); d == nil || d.Feed != "inventory" || d.ERP != "inventory" || d.Name() != "csv inventory" {
		t.Errorf("bolt csv %+v", d)
	}
	if s.ByID("nope") != nil || s.ByISA("ZZ", "NOPE") != nil {
		t.Error("unknown partner found")
	}
	want := "acme (active) isa ZZ/ACMEIND 004010 P; documents: 856 inbound, 810 inbound; inbound: sftp user acme, " +
		"poll acme-ftp ftps://edi.acme.example:990/outbound, poll acme-sftp sftp://127.0.0.1:2222/out; outbound: outbox; acks: 997, ta1 on_error"
	if got := acme.Summary(); got != want {
		t.Errorf("summary\n got %s\nwant %s", got, want)
	}
}

// refMax is the maximum length of REF02 in the first REF of the set.
func refMax(s *spec.Set) int {
	var walk func(l *spec.Loop) int
	walk = func(l *spec.Loop) int {
		for _, n := range l.Children {
			if n.Loop != nil {
				if m := walk(n.Loop); m != 0 {
					return m
				}
			} else if n.Segment.ID == "REF" {
				return n.Segment.Elements[1].Element.Max
			}
		}
		return 0
	}
	return walk(s.Root)
}

// TestLoadDirIsPure: each call builds an independent Set (hot reload is a
// second call and a pointer swap).
func TestLoadDirIsPure(t *testing.T) {
	a, b := loadValid(t), loadValid(t)
	if a.ByID("acme") == b.ByID("acme") || a.ByID("acme").Sets["856"] == b.ByID("acme").Sets["856"] {
		t.Error("two loads share partners")
	}
	if a.ByID("acme").Summary() != b.ByID("acme").Summary() {
		t.Error("two loads differ")
	}
	ps := a.Partners()
	ps[0] = nil
	if a.Partners()[0] == nil {
		t.Error("Partners returns the set's own slice")
	}
}

// Each class of error, with its exact message and position. Every fixture
// folder is a valid tree but for the one defect.
func TestLoadErrors(t *testing.T) {
	cases := []struct{ dir, want string }{
		{"unknown-key", "unknown-key/acme/partner.yaml:11:3: acks.duplicate_windw: unknown key (did you mean duplicate_window?)"},
		{"bad-enum", `bad-enum/acme/partner.yaml:10:15: acks.functional: "998" is not one of 997, 999, none`},
		{"bad-duration", `bad-duration/acme/partner.yaml:10:21: acks.duplicate_window: "30d" is not a duration (Go syntax such as 720h, 30m, 45s; days are written in hours, e.g. 720h for 30 days)`},
		{"bad-cron", `bad-cron/acme/partner.yaml:16:17: inbound.polls[0].schedule: "0 */5 * *" is not a cron expression: expected 5 to 6 fields, found 4: [0 */5 * *]`},
		{"sftp-no-host-key", `sftp-no-host-key/acme/partner.yaml:14:7: inbound.polls[0].host_key: sftp needs the server's host key pinned: host_key (SHA256:... fingerprint) or known_hosts_file`},
		{"inline-secret", `inline-secret/acme/partner.yaml:14:7: inbound.polls[0]: ftp needs password_env or password_file
inline-secret/acme/partner.yaml:17:7: inbound.polls[0].password: unknown key: secrets are never written in partner files; reference it with password_env or password_file`},
		{"duplicate-isa", `duplicate-isa/acme-east/partner.yaml:5:8: x12.isa: ZZ/ACMEIND is already the ISA ID of partner acme (testdata/errors/duplicate-isa/acme/partner.yaml:5:8)`},
		{"duplicate-sftp-user", `duplicate-sftp-user/bolt/partner.yaml:11:13: inbound.sftp[0].user: "acme" is already an SFTP user of partner acme (testdata/errors/duplicate-sftp-user/acme/partner.yaml:11:13)`},
		{"id-not-folder", `id-not-folder/acme/partner.yaml:1:5: id: "acme-inc" does not match its folder name "acme"`},
		{"missing-map", `missing-map/acme/partner.yaml:18:10: documents[1].map: testdata/errors/missing-map/acme/maps/810.yaml does not exist`},
		{"bad-cidr", `bad-cidr/acme/partner.yaml:13:42: inbound.sftp[0].allowed_networks[1]: "10.30.0.0/33" is not a network in CIDR notation (e.g. 10.20.0.0/16) or an address
bad-cidr/acme/partner.yaml:13:58: inbound.sftp[0].allowed_networks[2]: "10.40.1.0/16" has host bits set; did you mean 10.40.0.0/16?`},
		{"bad-public-key", `bad-public-key/acme/partner.yaml:12:21: inbound.sftp[0].public_keys[0]: not an SSH public key in authorized_keys format (ssh: no key found; last parsing error for ignored line: illegal base64 data at input byte 4)`},
		{"overlay-unknown-segment", `overlay-unknown-segment/acme/partner.yaml:21:9: overlays[0].rules[1]: segment ZZZ not found in the set`},
	}
	for _, c := range cases {
		t.Run(c.dir, func(t *testing.T) {
			s, err := LoadDir("testdata/errors/" + c.dir)
			if s != nil || err == nil {
				t.Fatal("no error")
			}
			want := "testdata/errors/" + strings.ReplaceAll(c.want, "\n", "\ntestdata/errors/")
			if err.Error() != want {
				t.Errorf("got\n%v\nwant\n%s", err, want)
			}
		})
	}
}

// TestLoadDirCollectsAllErrors: every problem of every partner, in file and
// line order, each a *FieldError.
func TestLoadDirCollectsAllErrors(t *testing.T) {
	_, err := LoadDir("testdata/errors/many")
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatalf("%T %v", err, err)
	}
	want := []string{
		`acme/partner.yaml:4:9: status: "live" is not one of active, testing, disabled`,
		`acme/partner.yaml:6:28: x12.isa.id: "ACMEINDUSTRIALSUPPLY" is 20 characters long, at most 15 are allowed`,
		`acme/partner.yaml:8:12: x12.version: "5010" is not one of 004010, 005010 (did you mean "005010"? quote it)`,
		`acme/partner.yaml:11:15: acks.functional: "998" is not one of 997, 999, none`,
		`acme/partner.yaml:12:22: acks.expect_ack_within: "1 day" is not a duration (Go syntax such as 720h, 30m, 45s)`,
		`acme/partner.yaml:15:7: inbound.sftp[0]: the user needs a way to log in: public_keys, public_keys_file, password_hash_env or password_hash_file`,
		`acme/partner.yaml:16:7: inbound.sftp[0].password_hash: unknown key: secrets are never written in partner files; reference it with password_hash_env or password_hash_file`,
		`acme/partner.yaml:17:21: inbound.sftp[0].max_sessions: must be a whole number`,
		`bolt/partner.yaml:6:7: inbound.polls[0]: s3 needs both access_key and secret_key references, or neither (the SDK's default credentials)`,
		`bolt/partner.yaml:9:17: inbound.polls[0].schedule: "every 5 minutes" is not a cron expression: expected 5 to 6 fields, found 3: [every 5 minutes]`,
		`bolt/partner.yaml:12:5: documents[0].match: required for csv feeds: a glob on the file name, e.g. "inv_*.csv"`,
		`bolt/partner.yaml:13:10: documents[0].map: testdata/errors/many/bolt/maps/inventory.yaml does not exist`,
	}
	if len(le.Errs) != len(want) {
		t.Errorf("%d errors, want %d:\n%v", len(le.Errs), len(want), err)
	}
	for i, e := range le.Errs {
		var fe *FieldError
		if !errors.As(e, &fe) || fe.Line == 0 {
			t.Errorf("error %d is not a positioned FieldError: %v", i, e)
		}
		if i < len(want) && e.Error() != "testdata/errors/many/"+want[i] {
			t.Errorf("error %d\n got %v\nwant testdata/errors/many/%s", i, e, want[i])
		}
	}
	if strings.Count(err.Error(), "\n") != len(le.Errs)-1 {
		t.Error("Error() is not one problem per line")
	}
}

// writeTree writes files (path → content) under a temporary root.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const csvPartner = `id: feed
name: Feed Co
status: active
inbound:
  polls:
    - name: drop
      url: file:///srv/drop
      schedule: "*/5 * * * *"
      after_fetch: delete
documents:
  - csv: stock
    match: "stock_*.csv"
    map: maps/stock.yaml
    erp: inventory
`

const stockMap = `mapping: stock
spec: edigw-map/v1
direction: inbound
source: {format: csv, header: true}
target: {schema: inventory-snapshot.v1}
output:
  supplier: {const: FEED}
  items:
    foreach: rows
    object:
      sku: {col: SKU, required: true}
`

const poAckMap = `mapping: po-ack
spec: edigw-map/v1
direction: inbound
source: {format: x12, version: "005010", transaction: "855"}
target: {schema: po-acknowledgement.v1}
output:
  poNumber: {from: BAK.BAK03, required: true}
`

func TestLoadTreeShape(t *testing.T) {
	// A CSV-only partner needs no x12 section and no acks; README files and
	// dot folders beside the partners are ignored.
	root := writeTree(t, map[string]string{
		"README.md":               "partners",
		".git/config":             "x",
		"feed/partner.yaml":       csvPartner,
		"feed/maps/stock.yaml":    stockMap,
		"feed/testdata/x.csv":     "a,b\n",
		"empty/nothing-here.yaml": "",
	})
	_, err := LoadDir(root)
	want := filepath.Join(root, "empty") + ": no partner.yaml (every folder here is a partner)"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
	os.RemoveAll(filepath.Join(root, "empty"))
	s, err := LoadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	p := s.ByID("feed")
	if p.X12 != nil || p.Acks.Functional != AckNone || p.Acks.TA1 != TA1Never || p.Outbound.Channel != ChannelOutbox {
		t.Errorf("csv partner %+v", p)
	}
	if pl := p.Inbound.Polls[0]; pl.URL != (Endpoint{Scheme: "file", Path: "/srv/drop"}) || pl.StableFor != DefaultStableFor {
		t.Errorf("file poll %+v", pl)
	}
	if _, err := LoadDir(filepath.Join(root, "missing")); err == nil || !strings.Contains(err.Error(), "no such file or directory") {
		t.Errorf("missing root: %v", err)
	}
}

func TestYAMLDetails(t *testing.T) {
	key := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOWgm7tlbhIdfr5RSTBhgWxJfiw60MqJzsqAUxNo3NrU acme@host"
	root := writeTree(t, map[string]string{
		// Unquoted codes keep their leading zeros; anchors and aliases work.
		"zeros/partner.yaml": `id: zeros
name: Zeros
status: disabled
x12:
  isa: {qualifier: 01, id: 007}
  gs_id: &gs 0070
  our_gs_id: *gs
  version: 005010
  usage: P
inbound:
  sftp: [{user: zeros, public_keys: ["` + key + `"]}]
documents:
  - {x12: 855, map: m.yaml, erp: acks}
`,
		"zeros/m.yaml": poAckMap,
		// Wrong shapes are reported once each, and decoding goes on.
		"shapes/partner.yaml": `id: shapes
name: [not, a, scalar]
status: active
inbound: just text
documents:
  - csv: stock
    match: "*.csv"
    map: m.yaml
    erp: {name: inventory}
`,
		"shapes/m.yaml": stockMap,
		// A duplicate key is a YAML error: the file stops there.
		"dupkey/partner.yaml": "id: dupkey\nname: x\nname: y\n",
	})
	_, err := LoadDir(root)
	got := strings.ReplaceAll(err.Error(), root+"/", "")
	want := `dupkey/partner.yaml:3:1: mapping key "name" already defined at [2:1]
shapes/partner.yaml:2:7: name: must be a single value, not a list
shapes/partner.yaml:4:10: inbound: must be a mapping (key: value), not a single value
shapes/partner.yaml:9:10: documents[0].erp: must be a single value, not a mapping`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	os.RemoveAll(filepath.Join(root, "shapes"))
	os.RemoveAll(filepath.Join(root, "dupkey"))
	s, err := LoadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	x := s.ByID("zeros").X12
	if x.ISA != (ISAID{"01", "007"}) || x.GSID != "0070" || x.OurGSID != "0070" || x.Version != "005010" {
		t.Errorf("zeros x12 %+v", x)
	}
	if s.ByID("zeros").Documents[0].Set != "855" {
		t.Errorf("document %+v", s.ByID("zeros").Documents[0])
	}
}

func TestBcryptHashCheckedWhenPresent(t *testing.T) {
	t.Setenv("BOLT_SFTP_BCRYPT", "plain-password")
	_, err := LoadDir("testdata/valid")
	want := "testdata/valid/bolt/partner.yaml:19:26: inbound.sftp[0].password_hash_env: env BOLT_SFTP_BCRYPT does not hold a bcrypt hash (make one with: htpasswd -nbB user password | cut -d: -f2)"
	if err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
	if strings.Contains(err.Error(), "plain-password") {
		t.Error("the secret leaked into the error")
	}
}

func TestSecretRefResolve(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "pw"), []byte("hunter2\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "crlf"), []byte("line1\nline2\r\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "two"), []byte("keep\n\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "empty"), []byte("\n"), 0o600)
	t.Setenv("EDIGW_TEST_SECRET", "from-env")
	t.Setenv("EDIGW_TEST_EMPTY", "")
	field := "partner acme: inbound.polls[0].password_env"
	ok := []struct {
		ref  SecretRef
		want string
	}{
		{SecretRef{Env: "EDIGW_TEST_SECRET", Field: field}, "from-env"},
		{SecretRef{File: "pw"}, "hunter2"},
		{SecretRef{File: filepath.Join(dir, "pw")}, "hunter2"},
		{SecretRef{File: "crlf"}, "line1\nline2"},
		{SecretRef{File: "two"}, "keep\n"},
	}
	for _, c := range ok {
		got, err := c.ref.Resolve(dir)
		if err != nil || got != c.want {
			t.Errorf("%v: %q, %v", c.ref, got, err)
		}
	}
	bad := []struct {
		ref  SecretRef
		want string
	}{
		{SecretRef{Env: "EDIGW_TEST_UNSET", Field: field}, field + ": environment variable EDIGW_TEST_UNSET is not set"},
		{SecretRef{Env: "EDIGW_TEST_EMPTY", Field: field}, field + ": environment variable EDIGW_TEST_EMPTY is empty"},
		{SecretRef{File: "nope", Field: "partner acme: x_file"}, "partner acme: x_file: cannot read " + filepath.Join(dir, "nope") + ": no such file or directory"},
		{SecretRef{File: "empty", Field: "partner acme: x_file"}, "partner acme: x_file: " + filepath.Join(dir, "empty") + " is empty"},
		{SecretRef{Field: field}, field + ": no secret configured"},
	}
	for _, c := range bad {
		if _, err := c.ref.Resolve(dir); err == nil || err.Error() != c.want {
			t.Errorf("%v: got %v, want %s", c.ref, err, c.want)
		}
	}
	if s := (SecretRef{Env: "X"}).String(); s != "env X" {
		t.Errorf("String %q", s)
	}
}

func TestParseEndpoint(t *testing.T) {
	ok := []struct {
		raw  string
		want Endpoint
		str  string
	}{
		{"sftp://edi.acme.example/outbound", Endpoint{Scheme: "sftp", Host: "edi.acme.example", Port: 22, Path: "/outbound"}, "sftp://edi.acme.example:22/outbound"},
		{"SFTP://[::1]:2022", Endpoint{Scheme: "sftp", Host: "::1", Port: 2022}, "sftp://[::1]:2022"},
		{"ftp://edi.acme.example:21/outbound", Endpoint{Scheme: "ftp", Host: "edi.acme.example", Port: 21, Path: "/outbound"}, ""},
		{"ftps://h/x", Endpoint{Scheme: "ftps", Host: "h", Port: 990, Path: "/x"}, ""},
		{"ftpes://h/x", Endpoint{Scheme: "ftpes", Host: "h", Port: 21, Path: "/x"}, ""},
		{"s3://edi-bucket/acme/in", Endpoint{Scheme: "s3", Bucket: "edi-bucket", Prefix: "acme/in/"}, "s3://edi-bucket/acme/in/"},
		{"s3://edi-bucket", Endpoint{Scheme: "s3", Bucket: "edi-bucket"}, "s3://edi-bucket/"},
		{"file:///srv/edi/../drop/", Endpoint{Scheme: "file", Path: "/srv/drop"}, "file:///srv/drop"},
		{"sftp://edigw@h:2222/out", Endpoint{Scheme: "sftp", User: "edigw", Host: "h", Port: 2222, Path: "/out"}, "sftp://edigw@h:2222/out"},
	}
	for _, c := range ok {
		e, err := ParseEndpoint(c.raw)
		if err != nil || e != c.want || (c.str != "" && e.String() != c.str) {
			t.Errorf("%s: %+v %q %v", c.raw, e, e.String(), err)
		}
	}
	bad := map[string]string{
		"sftp://u:p@h/x":   "a password does not belong in the URL",
		"s3://u@bucket/x":  "s3 URLs take no user name",
		"sftp:///x":        "sftp URL needs a host",
		"ftp://h:99999/":   `port "99999" is not 1-65535`,
		"s3://Bad_Bucket/": "s3 URL needs a bucket name",
		"file://dir/x":     `file URL names host "dir"`,
		"file:rel":         "query strings and fragments are not supported",
		"http://h/":        `scheme "http" is not one of`,
		"edi.acme.example": "the scheme is missing",
		"sftp://h/x?a=b":   "query strings",
	}
	for raw, want := range bad {
		if _, err := ParseEndpoint(raw); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", raw, err, want)
		}
	}
}

// The document and its mapping spec must agree on what is read and written.
func TestMapAgreement(t *testing.T) {
	key := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOWgm7tlbhIdfr5RSTBhgWxJfiw60MqJzsqAUxNo3NrU acme@host"
	root := writeTree(t, map[string]string{
		"acme/partner.yaml": `id: acme
name: ACME
status: active
x12: {isa: {qualifier: ZZ, id: ACME}, gs_id: ACME, version: "004010", usage: P}
inbound:
  sftp: [{user: acme, public_keys: ["` + key + `"]}]
documents:
  - {x12: "810", map: maps/poack.yaml, erp: invoices}
  - {x12: "850", direction: outbound, map: maps/poack.yaml}
  - {csv: stock, match: "*.csv", map: maps/poack.yaml, erp: inventory}
  - {x12: "855", map: maps/broken.yaml, erp: po-acks}
`,
		"acme/maps/poack.yaml":  poAckMap,
		"acme/maps/broken.yaml": strings.Replace(poAckMap, "spec: edigw-map/v1", "spec: edigw-map/v9", 1),
	})
	_, err := LoadDir(root)
	got := strings.ReplaceAll(fmtErr(err), root+"/", "")
	want := `acme/partner.yaml:8:23: documents[0].map: maps/poack.yaml reads transaction set 855, the document is 810
acme/partner.yaml:8:23: documents[0].map: maps/poack.yaml is for X12 005010, the partner uses 004010
acme/partner.yaml:9:44: documents[1].map: maps/poack.yaml is an inbound mapping, the document is outbound
acme/partner.yaml:9:44: documents[1].map: maps/poack.yaml writes json, the document is x12
acme/partner.yaml:10:39: documents[2].map: maps/poack.yaml reads x12, the document is a csv feed
acme/partner.yaml:11:23: documents[3].map: acme/maps/broken.yaml:2: spec: "edigw-map/v9", want "edigw-map/v1"`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func fmtErr(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}
