package partners

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edigw/edigw/edi"
	"github.com/edigw/edigw/edi/spec"
	"github.com/edigw/edigw/mapping"
	"github.com/robfig/cron/v3"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// This file turns a decoded partnerDoc into a Partner: defaults, and the
// validation of every field, each problem recorded with its position.

// Defaults applied when a field is left out.
const (
	DefaultDuplicateWindow = 720 * time.Hour
	DefaultExpectAckWithin = 24 * time.Hour
	DefaultMaxSessions     = 4
	DefaultMaxFiles        = 100
	DefaultStableFor       = 30 * time.Second // sftp, ftp*, file polls without trigger_suffix
	DefaultNaming          = "{type}_{control}.{ext}"
	DefaultPattern         = "*"
)

var (
	nameRe    = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$`)
	userRe    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	envRe     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	erpRe     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	segmentRe = regexp.MustCompile(`^[A-Z][A-Z0-9]{1,2}$`)
	setRe     = regexp.MustCompile(`^[0-9]{3}$`)
	qualRe    = regexp.MustCompile(`^[A-Z0-9]{2}$`)
	bucketRe  = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
	regionRe  = regexp.MustCompile(`^[a-z0-9-]+$`)
)

// cronParser accepts 5 fields, 6 with leading seconds, and @descriptors.
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// builder builds one Partner from its decoded document.
type builder struct {
	*decoder
	doc *partnerDoc
	p   *Partner
}

func oneOf[T ~string](vals ...T) string {
	s := make([]string, len(vals))
	for i, v := range vals {
		s[i] = string(v)
	}
	return strings.Join(s, ", ")
}

func (b *builder) build(folder string) {
	doc, p := b.doc, b.p
	switch {
	case doc.ID == "":
		b.errf("id", "required (the folder name, %q)", folder)
	case !nameRe.MatchString(doc.ID):
		b.errf("id", "%q must be lowercase letters, digits and inner dashes ([a-z0-9-]+, at most 64)", doc.ID)
	case doc.ID != folder:
		b.errf("id", "%q does not match its folder name %q", doc.ID, folder)
	}
	p.ID = doc.ID
	p.Name = strings.TrimSpace(doc.Name)
	if p.Name == "" {
		b.errf("name", "required")
	}
	p.Status = Status(doc.Status)
	switch p.Status {
	case StatusActive, StatusTesting, StatusDisabled:
	case "":
		b.errf("status", "required: one of %s", oneOf(StatusActive, StatusTesting, StatusDisabled))
	default:
		b.errf("status", "%q is not one of %s", doc.Status, oneOf(StatusActive, StatusTesting, StatusDisabled))
	}
	if doc.X12 != nil {
		b.x12(doc.X12)
	}
	b.acks()
	if doc.Inbound != nil {
		b.inbound(doc.Inbound)
	}
	b.overlays()
	b.documents()
	b.outbound()
}

// ---- x12 ----

func (b *builder) x12(x *x12Doc) {
	p := b.p
	p.X12 = &X12{GSID: x.GSID, Version: x.Version, Usage: x.Usage, OurGSID: x.OurGSID}
	if x.ISA == nil {
		b.errf("x12.isa", "required: the partner's ISA05/06, e.g. {qualifier: ZZ, id: ACMEIND}")
	} else {
		p.X12.ISA = b.isaID("x12.isa", x.ISA)
	}
	if x.OurISA != nil {
		p.X12.OurISA = b.isaID("x12.our_isa", x.OurISA)
		if p.X12.OurISA == p.X12.ISA && !p.X12.ISA.IsZero() {
			b.errf("x12.our_isa", "%s is the partner's own ISA ID", p.X12.OurISA)
		}
	}
	if x.GSID == "" {
		b.errf("x12.gs_id", "required: the partner's GS02 application sender code")
	} else {
		b.x12ID("x12.gs_id", x.GSID)
	}
	if b.has("x12.our_gs_id") {
		b.x12ID("x12.our_gs_id", x.OurGSID)
	}
	switch x.Version {
	case "004010", "005010":
	case "":
		b.errf("x12.version", `required: "004010" or "005010"`)
	default:
		hint := ""
		if f := spec.Family(x.Version); f != "" {
			hint = fmt.Sprintf(" (did you mean %q?)", f)
		} else if f := spec.Family("00" + x.Version); f != "" {
			hint = fmt.Sprintf(" (did you mean %q? quote it)", f)
		}
		b.errf("x12.version", "%q is not one of 004010, 005010%s", x.Version, hint)
	}
	switch x.Usage {
	case "P", "T":
	case "":
		b.errf("x12.usage", "required: P (production) or T (test)")
	default:
		b.errf("x12.usage", "%q is not one of P, T", x.Usage)
	}
	b.delimiters(x)
}

func (b *builder) isaID(path string, d *isaDoc) ISAID {
	id := ISAID{Qualifier: d.Qualifier, ID: d.ID}
	switch {
	case d.Qualifier == "":
		b.errf(path+".qualifier", "required (2 characters, e.g. ZZ, 01, 12)")
	case !qualRe.MatchString(d.Qualifier):
		b.errf(path+".qualifier", "%q must be 2 characters, uppercase letters or digits (e.g. ZZ, 01, 12)", d.Qualifier)
	}
	if d.ID == "" {
		b.errf(path+".id", "required (1-15 characters)")
	} else {
		b.x12ID(path+".id", d.ID)
	}
	return id
}

// x12ID checks an ISA06/08 or GS02/03 value: 1-15 printable ASCII
// characters, no padding.
func (b *builder) x12ID(path, s string) {
	switch {
	case len(s) > 15:
		b.errf(path, "%q is %d characters long, at most 15 are allowed", s, len(s))
	case strings.TrimSpace(s) != s:
		b.errf(path, "%q has leading or trailing spaces (the ISA padding is added when writing)", s)
	default:
		for _, c := range []byte(s) {
			if c < 0x20 || c > 0x7e {
				b.errf(path, "%q has a character that is not printable ASCII", s)
				return
			}
		}
	}
}

func (b *builder) delimiters(x *x12Doc) {
	d := edi.DefaultDelimiters
	if x.Version == "004010" {
		d.Repetition = 0
	}
	if x.Delimiters != nil {
		b.p.X12.Newline = x.Delimiters.Newline
		set := func(key, v string, dst *byte) {
			fp := "x12.delimiters." + key
			if !b.has(fp) {
				return
			}
			if len(v) != 1 || v[0] >= 0x80 || v[0] == ' ' || isAlnum(v[0]) {
				b.errf(fp, "%q must be one ASCII character that is not a letter, digit or space", v)
				return
			}
			*dst = v[0]
		}
		set("element", x.Delimiters.Element, &d.Element)
		set("component", x.Delimiters.Component, &d.Component)
		set("segment", x.Delimiters.Segment, &d.Segment)
		if b.has("x12.delimiters.repetition") && x.Version == "004010" {
			b.errf("x12.delimiters.repetition", "004010 has no repetition separator (ISA11 is the standards identifier U)")
		} else {
			set("repetition", x.Delimiters.Repetition, &d.Repetition)
		}
		all := []byte{d.Element, d.Component, d.Segment}
		if d.Repetition != 0 {
			all = append(all, d.Repetition)
		}
		for i, c := range all {
			if slices.Contains(all[i+1:], c) {
				b.errf("x12.delimiters", "the delimiters must differ from each other (%q is used twice)", string(c))
				break
			}
		}
	}
	b.p.X12.Delimiters = d
	for _, f := range []struct {
		path string
		v    string
	}{{"x12.isa.id", b.p.X12.ISA.ID}, {"x12.gs_id", b.p.X12.GSID}, {"x12.our_isa.id", b.p.X12.OurISA.ID}, {"x12.our_gs_id", b.p.X12.OurGSID}} {
		for _, c := range []byte{d.Element, d.Component, d.Segment, d.Repetition} {
			if c != 0 && strings.IndexByte(f.v, c) >= 0 {
				b.errf(f.path, "%q contains the delimiter %q", f.v, string(c))
				break
			}
		}
	}
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// ---- acks ----

func (b *builder) acks() {
	a := b.doc.Acks
	x := b.p.X12
	if a == nil {
		a = &acksDoc{}
	} else if x == nil {
		b.errf("acks", "acknowledgements apply to X12 partners: add the x12 section")
	}
	acks := &b.p.Acks
	acks.Functional = FunctionalAck(a.Functional)
	switch acks.Functional {
	case "":
		acks.Functional = AckNone
		if x != nil {
			acks.Functional = Ack997
			if x.Version == "005010" {
				acks.Functional = Ack999
			}
		}
	case Ack997, AckNone:
	case Ack999:
		if x != nil && x.Version == "004010" {
			b.errf("acks.functional", `"999" is a 005010 acknowledgement; 004010 partners get 997 (or none)`)
		}
	default:
		b.errf("acks.functional", "%q is not one of %s", a.Functional, oneOf(Ack997, Ack999, AckNone))
	}
	acks.TA1 = TA1Policy(a.TA1)
	switch acks.TA1 {
	case "":
		acks.TA1 = TA1OnRequest
		if x == nil {
			acks.TA1 = TA1Never
		}
	case TA1Always, TA1OnRequest, TA1OnError, TA1Never:
	default:
		b.errf("acks.ta1", "%q is not one of %s", a.TA1, oneOf(TA1Always, TA1OnRequest, TA1OnError, TA1Never))
	}
	acks.DuplicateWindow = b.duration("acks.duplicate_window", a.DuplicateWindow, DefaultDuplicateWindow, false)
	acks.ExpectAckWithin = b.duration("acks.expect_ack_within", a.ExpectAckWithin, DefaultExpectAckWithin, true)
}

// duration parses a Go duration; def applies when the field is absent.
func (b *builder) duration(path, s string, def time.Duration, zeroOK bool) time.Duration {
	if !b.has(path) || s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		hint := ""
		if strings.HasSuffix(s, "d") {
			hint = "; days are written in hours, e.g. 720h for 30 days"
		}
		b.errf(path, "%q is not a duration (Go syntax such as 720h, 30m, 45s%s)", s, hint)
		return def
	}
	if d < 0 || (d == 0 && !zeroOK) {
		b.errf(path, "%q must be positive", s)
		return def
	}
	return d
}

// ---- secrets ----

// secret builds the SecretRef of <prefix>_env / <prefix>_file under path.
func (b *builder) secret(path, prefix, env, file string) SecretRef {
	envKey, fileKey := join(path, prefix+"_env"), join(path, prefix+"_file")
	r := SecretRef{Env: env, File: file}
	if env != "" && file != "" {
		b.errf(fileKey, "%s_env and %s_file are exclusive", prefix, prefix)
	}
	if b.has(envKey) && !envRe.MatchString(env) {
		b.errf(envKey, "%q is not an environment variable name", env)
	}
	if b.has(fileKey) && file == "" {
		b.errf(fileKey, "empty path")
	}
	switch {
	case env != "":
		r.Field = fmt.Sprintf("partner %s: %s", b.p.ID, envKey)
	case file != "":
		r.Field = fmt.Sprintf("partner %s: %s", b.p.ID, fileKey)
	}
	return r
}

// present reads a secret only when it is present (variable set, file
// exists), for content checks at load; ok is false otherwise.
func (b *builder) present(r SecretRef) (string, bool) {
	if r.Env != "" {
		if _, set := os.LookupEnv(r.Env); !set {
			return "", false
		}
	} else if r.File != "" {
		if _, err := os.Stat(b.local(r.File)); errors.Is(err, fs.ErrNotExist) {
			return "", false
		}
	} else {
		return "", false
	}
	v, err := r.Resolve(b.p.Dir)
	if err != nil {
		b.errf(strings.TrimPrefix(r.Field, "partner "+b.p.ID+": "), "%s", strings.TrimPrefix(err.Error(), r.Field+": "))
		return "", false
	}
	return v, true
}

// local resolves a path of the profile against the partner folder.
func (b *builder) local(name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(b.p.Dir, name)
}

// ---- inbound ----

func (b *builder) inbound(in *inboundDoc) {
	for i := range in.SFTP {
		b.p.Inbound.SFTP = append(b.p.Inbound.SFTP, b.sftpUser(fmt.Sprintf("inbound.sftp[%d]", i), &in.SFTP[i]))
	}
	names := map[string]string{}
	for i := range in.Polls {
		path := fmt.Sprintf("inbound.polls[%d]", i)
		poll := b.poll(path, &in.Polls[i])
		if first, dup := names[poll.Name]; dup && poll.Name != "" {
			b.errf(path+".name", "%q is already the name of %s", poll.Name, first)
		}
		names[poll.Name] = path
		b.p.Inbound.Polls = append(b.p.Inbound.Polls, poll)
	}
}

func (b *builder) sftpUser(path string, d *sftpUserDoc) SFTPUser {
	u := SFTPUser{User: d.User, LegacyAlgorithms: d.LegacyAlgorithms, MaxSessions: DefaultMaxSessions, PublicKeysFile: d.PublicKeysFile}
	switch {
	case d.User == "":
		b.errf(path+".user", "required")
	case !userRe.MatchString(d.User):
		b.errf(path+".user", "%q must be 1-64 letters, digits, dots, dashes or underscores", d.User)
	}
	u.PasswordHash = b.secret(path, "password_hash", d.PasswordHashEnv, d.PasswordHashFile)
	if v, ok := b.present(u.PasswordHash); ok {
		if _, err := bcrypt.Cost([]byte(v)); err != nil {
			field := path + ".password_hash_env"
			if u.PasswordHash.Env == "" {
				field = path + ".password_hash_file"
			}
			b.errf(field, "%s does not hold a bcrypt hash (make one with: htpasswd -nbB user password | cut -d: -f2)", u.PasswordHash)
		}
	}
	for i, k := range d.PublicKeys {
		if key := b.publicKey(fmt.Sprintf("%s.public_keys[%d]", path, i), k, ""); key != nil {
			u.PublicKeys = append(u.PublicKeys, key)
		}
	}
	if d.PublicKeysFile != "" {
		fp := path + ".public_keys_file"
		data, err := os.ReadFile(b.local(d.PublicKeysFile))
		if err != nil {
			b.errf(fp, "%v", unwrapPath(err))
		} else {
			n := 0
			for ln, line := range strings.Split(string(data), "\n") {
				line = strings.TrimSpace(line)
				if line == "" || strings.HasPrefix(line, "#") {
					continue
				}
				n++
				if key := b.publicKey(fp, line, fmt.Sprintf("%s line %d: ", d.PublicKeysFile, ln+1)); key != nil {
					u.PublicKeys = append(u.PublicKeys, key)
				}
			}
			if n == 0 {
				b.errf(fp, "%s holds no public key", d.PublicKeysFile)
			}
		}
	}
	if u.PasswordHash.IsZero() && len(d.PublicKeys) == 0 && d.PublicKeysFile == "" {
		b.errf(path, "the user needs a way to log in: public_keys, public_keys_file, password_hash_env or password_hash_file")
	}
	for i, s := range d.AllowedNetworks {
		if p, ok := b.prefix(fmt.Sprintf("%s.allowed_networks[%d]", path, i), s); ok {
			u.AllowedNetworks = append(u.AllowedNetworks, p)
		}
	}
	if b.has(path + ".max_sessions") {
		if d.MaxSessions < 1 {
			b.errf(path+".max_sessions", "must be at least 1")
		} else {
			u.MaxSessions = d.MaxSessions
		}
	}
	return u
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}

func (b *builder) publicKey(path, s, where string) ssh.PublicKey {
	key, _, options, rest, err := ssh.ParseAuthorizedKey([]byte(s))
	if err != nil {
		b.errf(path, "%snot an SSH public key in authorized_keys format (%v)", where, err)
		return nil
	}
	if len(options) > 0 {
		b.errf(path, "%sauthorized_keys options (%s) are not supported; use allowed_networks", where, strings.Join(options, ","))
		return nil
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		b.errf(path, "%sone key per entry", where)
		return nil
	}
	switch key.Type() {
	case "ssh-dss": // x/crypto deprecates the constant; the refusal stays explicit
		b.errf(path, "%sssh-dss (DSA) keys are not accepted", where)
		return nil
	case ssh.KeyAlgoRSA:
		if ck, ok := key.(ssh.CryptoPublicKey); ok {
			if rk, ok := ck.CryptoPublicKey().(*rsa.PublicKey); ok && rk.N.BitLen() < 2048 {
				b.errf(path, "%sRSA key of %d bits, at least 2048 are required", where, rk.N.BitLen())
				return nil
			}
		}
	}
	return key
}

func (b *builder) prefix(path, s string) (netip.Prefix, bool) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		a, aerr := netip.ParseAddr(s)
		if aerr != nil {
			b.errf(path, "%q is not a network in CIDR notation (e.g. 10.20.0.0/16) or an address", s)
			return netip.Prefix{}, false
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	if m := p.Masked(); m != p {
		b.errf(path, "%q has host bits set; did you mean %s?", s, m)
		return netip.Prefix{}, false
	}
	return p, true
}

func (b *builder) poll(path string, d *pollDoc) Poll {
	p := Poll{Name: d.Name, Pattern: DefaultPattern, MaxFiles: DefaultMaxFiles, Location: time.UTC, TriggerSuffix: d.TriggerSuffix}
	switch {
	case d.Name == "":
		b.errf(path+".name", "required")
	case !nameRe.MatchString(d.Name):
		b.errf(path+".name", "%q must be lowercase letters, digits and inner dashes", d.Name)
	}
	p.Remote = b.remote(path, &d.remoteDoc)
	if d.Timezone != "" {
		loc, err := time.LoadLocation(d.Timezone)
		if err != nil {
			b.errf(path+".timezone", "%q is not a time zone name (e.g. UTC, America/Chicago)", d.Timezone)
		} else {
			p.Location = loc
		}
	}
	p.Schedule = strings.TrimSpace(d.Schedule)
	switch {
	case p.Schedule == "":
		b.errf(path+".schedule", `required: a cron expression such as "*/5 * * * *" or "@every 10m"`)
	case strings.HasPrefix(p.Schedule, "TZ=") || strings.HasPrefix(p.Schedule, "CRON_TZ="):
		b.errf(path+".schedule", "set the time zone with timezone:, not in the expression")
	default:
		sched, err := cronParser.Parse("CRON_TZ=" + p.Location.String() + " " + p.Schedule)
		if err != nil {
			b.errf(path+".schedule", "%q is not a cron expression: %v", d.Schedule, err)
		} else {
			p.Cron = sched
		}
	}
	p.Jitter = b.duration(path+".jitter", d.Jitter, 0, true)
	if b.has(path + ".pattern") {
		p.Pattern = d.Pattern
		if !validGlob(d.Pattern) || d.Pattern == "" || strings.Contains(d.Pattern, "/") {
			b.errf(path+".pattern", "%q is not a file name glob (e.g. *.edi)", d.Pattern)
		}
	}
	if b.has(path+".stable_for") && d.TriggerSuffix != "" {
		b.errf(path+".trigger_suffix", "stable_for and trigger_suffix are exclusive")
	}
	if d.TriggerSuffix == "" && p.URL.Scheme != SchemeS3 {
		p.StableFor = DefaultStableFor // s3 objects appear whole; files grow while written
	}
	p.StableFor = b.duration(path+".stable_for", d.StableFor, p.StableFor, true)
	if b.has(path+".trigger_suffix") && (d.TriggerSuffix == "" || strings.Contains(d.TriggerSuffix, "/")) {
		b.errf(path+".trigger_suffix", "%q must be a file name suffix such as .done", d.TriggerSuffix)
	}
	switch a := d.AfterFetch; {
	case a == "delete", a == "keep":
		p.AfterFetch.Action = FetchAction(a)
	case strings.HasPrefix(a, "move:"):
		p.AfterFetch = AfterFetch{Action: FetchMove, Dir: strings.TrimSpace(strings.TrimPrefix(a, "move:"))}
		if p.AfterFetch.Dir == "" {
			b.errf(path+".after_fetch", "move: needs a directory, e.g. move:/outbound/done")
		}
	case a == "":
		b.errf(path+".after_fetch", "required: delete, move:<dir> or keep")
	default:
		b.errf(path+".after_fetch", "%q is not one of delete, move:<dir>, keep", a)
	}
	if b.has(path + ".max_files") {
		if d.MaxFiles < 1 {
			b.errf(path+".max_files", "must be at least 1")
		} else {
			p.MaxFiles = d.MaxFiles
		}
	}
	return p
}

// validGlob reports whether pattern is a well-formed path.Match pattern.
func validGlob(pattern string) bool {
	_, err := path.Match(pattern, "")
	return err == nil
}

// ---- remotes (poll sources and push destinations) ----

// ParseEndpoint parses a poll or push URL: sftp://host[:port]/dir,
// ftp://, ftps:// (implicit TLS), ftpes:// (explicit TLS), s3://bucket/prefix
// or file:///dir. A user name may be in it (sftp://user@host/dir, as
// partners write them); a password, query strings and fragments may not.
func ParseEndpoint(raw string) (Endpoint, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Endpoint{}, fmt.Errorf("not a URL: %v", errors.Unwrap(err))
	}
	e := Endpoint{Scheme: strings.ToLower(u.Scheme)}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			return e, errors.New("a password does not belong in the URL: use password_env or password_file")
		}
		e.User = u.User.Username()
	}
	if u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return e, errors.New("query strings and fragments are not supported")
	}
	defPort := map[string]int{SchemeSFTP: 22, SchemeFTP: 21, SchemeFTPS: 990, SchemeFTPES: 21}
	switch e.Scheme {
	case SchemeSFTP, SchemeFTP, SchemeFTPS, SchemeFTPES:
		e.Host = u.Hostname()
		if e.Host == "" {
			return e, fmt.Errorf("%s URL needs a host", e.Scheme)
		}
		e.Port = defPort[e.Scheme]
		if ps := u.Port(); ps != "" {
			n, err := strconv.Atoi(ps)
			if err != nil || n < 1 || n > 65535 {
				return e, fmt.Errorf("port %q is not 1-65535", ps)
			}
			e.Port = n
		}
		e.Path = u.Path
	case SchemeS3, SchemeFile:
		if e.User != "" {
			return e, fmt.Errorf("%s URLs take no user name", e.Scheme)
		}
		return parseBucketOrDir(e, u)
	case "":
		return e, errors.New("not a URL: the scheme is missing (sftp://, ftp://, ftps://, ftpes://, s3://, file://)")
	default:
		return e, fmt.Errorf("scheme %q is not one of sftp, ftp, ftps, ftpes, s3, file", u.Scheme)
	}
	return e, nil
}

func parseBucketOrDir(e Endpoint, u *url.URL) (Endpoint, error) {
	switch e.Scheme {
	case SchemeS3:
		e.Bucket = u.Host
		if !bucketRe.MatchString(e.Bucket) {
			return e, fmt.Errorf("s3 URL needs a bucket name (3-63 lowercase letters, digits, dots, dashes): s3://bucket/prefix")
		}
		e.Prefix = strings.TrimPrefix(u.Path, "/")
		if e.Prefix != "" && !strings.HasSuffix(e.Prefix, "/") {
			e.Prefix += "/"
		}
	case SchemeFile:
		if u.Host != "" && u.Host != "localhost" {
			return e, fmt.Errorf("file URL names host %q; write an absolute path: file:///dir", u.Host)
		}
		if !strings.HasPrefix(u.Path, "/") {
			return e, errors.New("file URL needs an absolute path: file:///dir")
		}
		e.Path = path.Clean(u.Path)
	}
	return e, nil
}

// remote validates the URL and credentials of a poll or push. Every field
// that does not apply to the URL's scheme is an error, so a misplaced
// setting never goes unnoticed.
func (b *builder) remote(path string, d *remoteDoc) Remote {
	r := Remote{Username: d.Username, Region: d.Region, S3Endpoint: d.Endpoint, KnownHostsFile: d.KnownHostsFile, CAFile: d.CAFile}
	r.Password = b.secret(path, "password", d.PasswordEnv, d.PasswordFile)
	r.PrivateKey = b.secret(path, "private_key", d.PrivateKeyEnv, d.PrivateKeyFile)
	r.AccessKey = b.secret(path, "access_key", d.AccessKeyEnv, d.AccessKeyFile)
	r.SecretKey = b.secret(path, "secret_key", d.SecretKeyEnv, d.SecretKeyFile)
	if d.URL == "" {
		b.errf(path+".url", "required (sftp://, ftp://, ftps://, ftpes://, s3://bucket/prefix or file:///dir)")
		return r
	}
	e, err := ParseEndpoint(d.URL)
	if err != nil {
		b.errf(path+".url", "%q: %v", d.URL, err)
		return r
	}
	r.URL = e
	if e.User != "" { // sftp://user@host/...: the same as username:
		if d.Username != "" && d.Username != e.User {
			b.errf(path+".username", "%q differs from the user %q in the URL", d.Username, e.User)
		}
		d.Username, r.Username = e.User, e.User
	}
	allowed := map[string][]string{
		SchemeSFTP:  {"username", "password", "private_key", "host_key", "known_hosts_file"},
		SchemeFTP:   {"username", "password"},
		SchemeFTPS:  {"username", "password", "ca_file"},
		SchemeFTPES: {"username", "password", "ca_file"},
		SchemeS3:    {"access_key", "secret_key", "region", "endpoint"},
		SchemeFile:  {},
	}[e.Scheme]
	for _, f := range []struct {
		name string
		set  bool
		keys []string
	}{
		{"username", d.Username != "", []string{"username"}},
		{"password", !r.Password.IsZero(), []string{"password_env", "password_file"}},
		{"private_key", !r.PrivateKey.IsZero(), []string{"private_key_env", "private_key_file"}},
		{"host_key", d.HostKey != "", []string{"host_key"}},
		{"known_hosts_file", d.KnownHostsFile != "", []string{"known_hosts_file"}},
		{"ca_file", d.CAFile != "", []string{"ca_file"}},
		{"access_key", !r.AccessKey.IsZero(), []string{"access_key_env", "access_key_file"}},
		{"secret_key", !r.SecretKey.IsZero(), []string{"secret_key_env", "secret_key_file"}},
		{"region", d.Region != "", []string{"region"}},
		{"endpoint", d.Endpoint != "", []string{"endpoint"}},
	} {
		if !f.set || slices.Contains(allowed, f.name) {
			continue
		}
		for _, k := range f.keys {
			if b.has(join(path, k)) {
				b.errf(join(path, k), "does not apply to %s URLs", e.Scheme)
			}
		}
	}
	switch e.Scheme {
	case SchemeSFTP:
		if d.Username == "" {
			b.errf(path+".username", "required for sftp")
		}
		if r.Password.IsZero() && r.PrivateKey.IsZero() {
			b.errf(path, "sftp needs credentials: private_key_file, private_key_env, password_env or password_file")
		}
		if v, ok := b.present(r.PrivateKey); ok {
			if _, err := ssh.ParsePrivateKey([]byte(v)); err != nil {
				field := path + ".private_key_env"
				if r.PrivateKey.Env == "" {
					field = path + ".private_key_file"
				}
				b.errf(field, "%s is not a usable private key: %v", r.PrivateKey, err)
			}
		}
		switch {
		case d.HostKey == "" && d.KnownHostsFile == "":
			b.errf(path+".host_key", "sftp needs the server's host key pinned: host_key (SHA256:... fingerprint) or known_hosts_file")
		case d.HostKey != "" && d.KnownHostsFile != "":
			b.errf(path+".known_hosts_file", "host_key and known_hosts_file are exclusive")
		case d.HostKey != "":
			r.HostKey = b.hostKey(path+".host_key", d.HostKey)
		default:
			if _, err := knownhosts.New(b.local(d.KnownHostsFile)); err != nil {
				b.errf(path+".known_hosts_file", "%v", unwrapPath(err))
			}
		}
	case SchemeFTP, SchemeFTPS, SchemeFTPES:
		if d.Username == "" {
			b.errf(path+".username", "required for %s (anonymous for anonymous FTP)", e.Scheme)
		} else if r.Password.IsZero() && d.Username != "anonymous" {
			b.errf(path, "%s needs password_env or password_file", e.Scheme)
		}
		if d.CAFile != "" && e.Scheme != SchemeFTP {
			data, err := os.ReadFile(b.local(d.CAFile))
			if err != nil {
				b.errf(path+".ca_file", "%v", unwrapPath(err))
			} else if !x509.NewCertPool().AppendCertsFromPEM(data) {
				b.errf(path+".ca_file", "%s holds no PEM certificate", d.CAFile)
			}
		}
	case SchemeS3:
		if r.AccessKey.IsZero() != r.SecretKey.IsZero() {
			b.errf(path, "s3 needs both access_key and secret_key references, or neither (the SDK's default credentials)")
		}
		if d.Region != "" && !regionRe.MatchString(d.Region) {
			b.errf(path+".region", "%q is not a region name (e.g. us-east-1)", d.Region)
		}
		if d.Endpoint != "" {
			u, err := url.Parse(d.Endpoint)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
				b.errf(path+".endpoint", "%q is not an http(s)://host[:port] URL", d.Endpoint)
			}
		}
	}
	return r
}

func (b *builder) hostKey(path, s string) string {
	if rest, ok := strings.CutPrefix(s, "SHA256:"); ok {
		raw, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(rest, "="))
		if err != nil || len(raw) != 32 {
			b.errf(path, "%q is not a SHA256 fingerprint (ssh-keygen -lf key.pub prints one)", s)
			return ""
		}
		return "SHA256:" + base64.RawStdEncoding.EncodeToString(raw)
	}
	if key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s)); err == nil {
		return ssh.FingerprintSHA256(key)
	}
	b.errf(path, "%q is neither a SHA256:... fingerprint nor a public key (MD5 fingerprints are not accepted)", s)
	return ""
}

// ---- outbound ----

var placeholders = []string{"type", "control", "partner", "date", "time", "ext"}

func (b *builder) outbound() {
	d := b.doc.Outbound
	if d == nil {
		d = &outboundDoc{}
	}
	o := &b.p.Outbound
	o.Channel = Channel(d.Channel)
	o.Naming = DefaultNaming
	switch o.Channel {
	case "":
		o.Channel = ChannelOutbox
	case ChannelOutbox, ChannelPush:
	default:
		b.errf("outbound.channel", "%q is not one of %s", d.Channel, oneOf(ChannelOutbox, ChannelPush))
	}
	if o.Channel == ChannelPush {
		r := b.remote("outbound", &d.remoteDoc)
		o.Push = &r
	} else if d.remoteDoc != (remoteDoc{}) {
		for k := range structFields(reflect.TypeFor[remoteDoc]()) {
			if b.has("outbound." + k) {
				b.errf("outbound."+k, "applies to channel push only")
			}
		}
	}
	if o.Channel == ChannelOutbox && len(b.p.Inbound.SFTP) == 0 && b.sends() {
		b.errf("outbound.channel", "outbox: the partner has no inbound.sftp user to collect files with; add one or use channel: push")
	}
	if b.has("outbound.naming") {
		o.Naming = d.Naming
		b.naming("outbound.naming", d.Naming)
	}
}

// sends reports whether anything is ever sent to the partner.
func (b *builder) sends() bool {
	p := b.p
	if p.X12 != nil && (p.Acks.Functional != AckNone || p.Acks.TA1 != TA1Never) {
		return true
	}
	for _, d := range p.Documents {
		if d.Direction == DirectionOutbound {
			return true
		}
	}
	return false
}

func (b *builder) naming(path, s string) {
	rest, seen := s, map[string]bool{}
	for {
		i := strings.IndexAny(rest, "{}")
		if i < 0 {
			break
		}
		if rest[i] == '}' {
			b.errf(path, "%q has an unmatched }", s)
			return
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			b.errf(path, "%q has an unmatched {", s)
			return
		}
		name := rest[i+1 : i+j]
		if !slices.Contains(placeholders, name) {
			b.errf(path, "unknown placeholder {%s} (known: {%s})", name, strings.Join(placeholders, "} {"))
			return
		}
		seen[name] = true
		rest = rest[i+j+1:]
	}
	switch {
	case strings.ContainsAny(s, `/\`):
		b.errf(path, "%q must be a file name, without directories", s)
	case !seen["control"]:
		b.errf(path, "%q must contain {control}, or files would overwrite each other", s)
	}
}

// ---- documents ----

func (b *builder) documents() {
	docs := b.doc.Documents
	if len(docs) == 0 {
		b.errf("documents", "at least one document is required")
	}
	seen := map[string]string{}
	for i := range docs {
		path := fmt.Sprintf("documents[%d]", i)
		doc, key := b.document(path, &docs[i])
		if key != "" {
			if first, dup := seen[key]; dup {
				b.errf(path, "%s is already configured by %s", doc.Name(), first)
			}
			seen[key] = path
		}
		b.p.Documents = append(b.p.Documents, doc)
	}
}

// document builds documents[i]; key identifies it for duplicate detection.
func (b *builder) document(path string, d *documentDoc) (Document, string) {
	doc := Document{Direction: Direction(d.Direction), MapFile: d.Map, ERP: d.ERP, Match: d.Match}
	switch doc.Direction {
	case "":
		doc.Direction = DirectionInbound
	case DirectionInbound, DirectionOutbound:
	default:
		b.errf(path+".direction", "%q is not one of inbound, outbound", d.Direction)
	}
	key := ""
	switch {
	case d.X12 != "" && d.CSV != "":
		b.errf(path+".csv", "a document is x12 or csv, not both")
		return doc, ""
	case d.X12 != "":
		doc.Format, doc.Set = FormatX12, d.X12
		key = "x12 " + d.X12 + " " + string(doc.Direction)
		x := b.p.X12
		switch {
		case d.X12 == "997" || d.X12 == "999" || d.X12 == "TA1":
			b.errf(path+".x12", "%q: acknowledgements are configured under acks, not documents", d.X12)
		case !setRe.MatchString(d.X12):
			b.errf(path+".x12", "%q is not an X12 transaction set ID (e.g. \"850\")", d.X12)
		case x == nil:
			b.errf(path+".x12", "x12 documents need the partner's x12 section (isa, gs_id, version, usage)")
		case x.Version != "" && spec.Family(x.Version) == x.Version && spec.Default(x.Version).Set(d.X12) == nil:
			b.errf(path+".x12", "transaction set %s is not supported in %s", d.X12, x.Version)
		}
		if d.Match != "" {
			b.errf(path+".match", "applies to csv feeds only (X12 files are recognised by their content)")
		}
	case d.CSV != "":
		doc.Format, doc.Feed = FormatCSV, d.CSV
		key = "csv " + d.CSV
		if !nameRe.MatchString(d.CSV) {
			b.errf(path+".csv", "%q must be lowercase letters, digits and inner dashes", d.CSV)
		}
		if doc.Direction == DirectionOutbound {
			b.errf(path+".direction", "csv feeds are inbound only")
		}
		switch {
		case d.Match == "":
			b.errf(path+".match", `required for csv feeds: a glob on the file name, e.g. "inv_*.csv"`)
		case strings.Contains(d.Match, "/"):
			b.errf(path+".match", "%q must match a file name, without directories", d.Match)
		default:
			if !validGlob(d.Match) {
				b.errf(path+".match", "%q is not a file name glob", d.Match)
			}
		}
	default:
		b.errf(path, `say what the document is: x12: "856" or csv: <feed name>`)
		return doc, ""
	}
	switch {
	case doc.Direction == DirectionInbound && d.ERP == "":
		b.errf(path+".erp", "required for inbound documents: the ERP endpoint name they are delivered to")
	case doc.Direction == DirectionOutbound && d.ERP != "":
		b.errf(path+".erp", "applies to inbound documents only (outbound documents come from the ERP's API)")
	case d.ERP != "" && !erpRe.MatchString(d.ERP):
		b.errf(path+".erp", "%q is not an endpoint name", d.ERP)
	}
	doc.Map = b.mapping(path+".map", &doc)
	return doc, key
}

// mapping loads the document's mapping spec and checks that it reads and
// writes what the document says. A field the map leaves empty is not
// compared.
func (b *builder) mapping(path string, doc *Document) *mapping.Map {
	name := doc.MapFile
	switch {
	case name == "":
		b.errf(path, "required: the mapping spec, e.g. maps/856.yaml")
		return nil
	case filepath.IsAbs(name) || !filepath.IsLocal(name):
		b.errf(path, "%q must be a path inside the partner folder", name)
		return nil
	}
	file := filepath.Join(b.p.Dir, name)
	if st, err := os.Stat(file); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			b.errf(path, "%s does not exist", file)
		} else {
			b.errf(path, "%v", unwrapPath(err))
		}
		return nil
	} else if st.IsDir() {
		b.errf(path, "%s is a directory", file)
		return nil
	}
	// Selectors are checked against the partner's overlaid sets.
	m, err := mapping.Load(file, mapping.LoadOptions{Set: func(family, tx string) *spec.Set {
		if b.p.X12 != nil && family == b.p.X12.Version {
			return b.p.TransactionSet(tx)
		}
		return spec.Default(family).Set(tx)
	}})
	if err != nil {
		for _, e := range flatten(err) {
			b.errf(path, "%v", e)
		}
		return nil
	}
	if m == nil {
		return nil
	}
	if m.Direction != "" && m.Direction != string(doc.Direction) {
		b.errf(path, "%s is an %s mapping, the document is %s", name, m.Direction, doc.Direction)
	}
	var version string
	if b.p.X12 != nil {
		version = b.p.X12.Version
	}
	checkX12 := func(side, format, set, ver string) {
		if format != "" && format != "x12" {
			b.errf(path, "%s %s %s, the document is x12", name, side, format)
		}
		if set != "" && set != doc.Set {
			b.errf(path, "%s %s transaction set %s, the document is %s", name, side, set, doc.Set)
		}
		if ver != "" && (version == "004010" || version == "005010") && spec.Family(ver) != version {
			b.errf(path, "%s is for X12 %s, the partner uses %s", name, ver, version)
		}
	}
	switch {
	case doc.Format == FormatCSV:
		if f := m.Source.Format; f != "" && f != "csv" {
			b.errf(path, "%s reads %s, the document is a csv feed", name, f)
		}
	case doc.Direction == DirectionInbound:
		checkX12("reads", m.Source.Format, m.Source.Transaction, m.Source.Version)
	default:
		checkX12("writes", m.Target.Format, m.Target.Transaction, m.Target.Version)
	}
	return m
}

// flatten splits joined errors (errors.Join, or a type with Unwrap() []error
// such as mapping.LoadError) into one error per problem.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	if le, ok := err.(*mapping.LoadError); ok {
		return le.Errs
	}
	return []error{err}
}

// ---- overlays ----

func (b *builder) overlays() {
	x := b.p.X12
	seen := map[string]string{}
	for i, o := range b.doc.Overlays {
		path := fmt.Sprintf("overlays[%d]", i)
		ov := spec.Overlay{Set: o.Set}
		if x == nil {
			b.errf(path, "overlays need the partner's x12 section")
			continue
		}
		if first, dup := seen[o.Set]; dup {
			b.errf(path+".set", "set %s already has an overlay (%s); put all its rules in one", o.Set, first)
			continue
		}
		seen[o.Set] = path
		if o.Set == "" {
			b.errf(path+".set", `required: the transaction set, e.g. "856"`)
			continue
		}
		if x.Version != "004010" && x.Version != "005010" {
			continue // reported on x12.version
		}
		dict := spec.Default(x.Version)
		base := dict.Set(o.Set)
		if base == nil {
			b.errf(path+".set", "transaction set %q is not defined in %s", o.Set, x.Version)
			continue
		}
		if len(o.Rules) == 0 {
			b.errf(path+".rules", "at least one rule is required")
			continue
		}
		// Apply the rules one at a time so that every bad rule is reported
		// at its own line; the result is the same as applying them at once.
		cur := &spec.Dictionary{Version: x.Version, Sets: map[string]*spec.Set{o.Set: base}}
		ok := true
		for j, rd := range o.Rules {
			rp := fmt.Sprintf("%s.rules[%d]", path, j)
			rule, valid := b.rule(rp, &rd)
			ov.Rules = append(ov.Rules, rule)
			if !valid {
				ok = false
				continue
			}
			s, err := cur.Apply(spec.Overlay{Set: o.Set, Rules: []spec.OverlayRule{rule}})
			if err != nil {
				if inner := errors.Unwrap(err); inner != nil {
					err = inner
				}
				b.errf(rp, "%v", err)
				ok = false
				continue
			}
			cur.Sets[o.Set] = s
		}
		b.p.Overlays = append(b.p.Overlays, ov)
		if ok {
			b.p.Sets[o.Set] = cur.Sets[o.Set]
		}
	}
}

func (b *builder) rule(path string, d *ruleDoc) (spec.OverlayRule, bool) {
	r := spec.OverlayRule{Segment: d.Segment, Loop: d.Loop, Element: d.Element, Component: d.Component, Min: d.Min, Max: d.Max, Codes: d.Codes}
	ok := true
	bad := func(field, format string, args ...any) {
		b.errf(path+"."+field, format, args...)
		ok = false
	}
	switch {
	case d.Segment == "":
		bad("segment", "required")
	case !segmentRe.MatchString(d.Segment):
		bad("segment", "%q is not a segment ID (e.g. REF)", d.Segment)
	}
	switch d.Usage {
	case "":
	case "M", "O", "X", "N":
		r.Usage = spec.Usage(d.Usage[0])
	default:
		bad("usage", "%q is not one of M, O, X, N", d.Usage)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"element", d.Element}, {"component", d.Component}, {"min", d.Min}, {"max", d.Max}} {
		if f.v < 0 {
			bad(f.name, "must not be negative")
		}
	}
	if d.Component > 0 && d.Element == 0 {
		bad("component", "needs element")
	}
	if b.has(path+".codes") && len(d.Codes) == 0 {
		bad("codes", "empty list")
	}
	if ok && r.Usage == 0 && r.Min == 0 && r.Max == 0 && len(r.Codes) == 0 {
		b.errf(path, "the rule changes nothing: give usage, min, max or codes")
		ok = false
	}
	return r, ok
}
