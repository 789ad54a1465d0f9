package partners

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/edigw/edigw/edi/spec"
)

// ProfileFile is the name of a partner's profile inside its folder.
const ProfileFile = "partner.yaml"

// Set is a loaded, validated set of partners with the lookups the gateway
// routes by. It is immutable: a reload builds a new Set.
type Set struct {
	partners []*Partner // sorted by ID
	byID     map[string]*Partner
	byISA    map[ISAID]*Partner
	bySFTP   map[string]sftpEntry
}

type sftpEntry struct {
	p *Partner
	u *SFTPUser
}

// Partners returns the partners sorted by ID. The slice is the caller's;
// the partners are shared and must not be modified.
func (s *Set) Partners() []*Partner { return slices.Clone(s.partners) }

// Len returns the number of partners.
func (s *Set) Len() int { return len(s.partners) }

// ByID returns the partner with the ID, or nil.
func (s *Set) ByID(id string) *Partner { return s.byID[id] }

// ByISA returns the partner whose ISA sender qualifier and ID (ISA05/06 of
// what it sends us) are these, or nil. The ID may carry the ISA's space
// padding.
func (s *Set) ByISA(qualifier, id string) *Partner {
	return s.byISA[ISAID{Qualifier: strings.TrimSpace(qualifier), ID: strings.TrimRight(id, " ")}]
}

// BySFTPUser returns the partner owning the SFTP listener user name, and
// the user; nil, nil if there is none.
func (s *Set) BySFTPUser(name string) (*Partner, *SFTPUser) {
	e, ok := s.bySFTP[name]
	if !ok {
		return nil, nil
	}
	return e.p, e.u
}

// LoadError holds every problem found by LoadDir, across all partners.
// Error() lists them one per line, each starting with file:line:col.
type LoadError struct {
	Errs []error
}

func (e *LoadError) Error() string {
	s := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		s[i] = err.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap returns the individual problems (mostly *FieldError).
func (e *LoadError) Unwrap() []error { return e.Errs }

// loaded is one partner as loaded, with the decoder that knows the
// positions of its fields (for cross-partner errors).
type loaded struct {
	p *Partner
	d *decoder
}

// LoadDir loads every partner folder under root (root/<id>/partner.yaml;
// folders whose names start with "." are skipped). It validates every
// field, loads every document's mapping spec and applies overlays. On any
// problem it returns nil and a *LoadError listing all problems of all
// partners, in file and line order.
//
// LoadDir has no side effects and keeps no state: call it again to reload.
func LoadDir(root string) (*Set, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, &LoadError{Errs: []error{unwrapPath(err)}}
	}
	var all []loaded
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		dir := filepath.Join(root, name)
		if !e.IsDir() {
			if st, err := os.Stat(dir); err != nil || !st.IsDir() {
				continue // files beside the partner folders (README.md) are fine
			}
		}
		file := filepath.Join(dir, ProfileFile)
		data, err := os.ReadFile(file)
		if err != nil {
			msg := err.Error()
			if errors.Is(err, fs.ErrNotExist) {
				msg = "no " + ProfileFile + " (every folder here is a partner)"
			}
			errs = append(errs, &FieldError{File: dir, Msg: msg})
			continue
		}
		l := loadPartner(file, dir, name, data)
		all = append(all, l)
	}
	crossCheck(all)
	for _, l := range all {
		errs = append(errs, sortErrs(l.d.errs)...)
	}
	if len(errs) > 0 {
		return nil, &LoadError{Errs: errs}
	}
	s := &Set{byID: map[string]*Partner{}, byISA: map[ISAID]*Partner{}, bySFTP: map[string]sftpEntry{}}
	for _, l := range all {
		p := l.p
		s.partners = append(s.partners, p)
		s.byID[p.ID] = p
		if p.X12 != nil {
			s.byISA[p.X12.ISA] = p
		}
		for i := range p.Inbound.SFTP {
			u := &p.Inbound.SFTP[i]
			s.bySFTP[u.User] = sftpEntry{p, u}
		}
	}
	slices.SortFunc(s.partners, func(a, b *Partner) int { return cmp.Compare(a.ID, b.ID) })
	return s, nil
}

// loadPartner decodes and validates one partner.yaml.
func loadPartner(file, dir, folder string, data []byte) loaded {
	d := newDecoder(file)
	p := &Partner{ID: folder, Dir: dir, File: file, Sets: map[string]*spec.Set{}}
	var doc partnerDoc
	if d.parse(data, &doc) {
		b := &builder{decoder: d, doc: &doc, p: p}
		b.build(folder)
	}
	return loaded{p: p, d: d}
}

func sortErrs(errs []error) []error {
	slices.SortStableFunc(errs, func(a, b error) int {
		var fa, fb *FieldError
		if !errors.As(a, &fa) || !errors.As(b, &fb) {
			return 0
		}
		return cmp.Or(cmp.Compare(fa.Line, fb.Line), cmp.Compare(fa.Column, fb.Column))
	})
	return errs
}

// crossCheck reports what must be unique across partners: the ISA sender
// qualifier and ID, and SFTP user names. The second and later uses are the
// errors; they name the first.
func crossCheck(all []loaded) {
	type first struct {
		l    loaded
		path string
	}
	isa := map[ISAID]first{}
	users := map[string]first{}
	where := func(f first) string {
		if f.l.d == nil {
			return ""
		}
		p := f.l.d.at(f.path)
		return fmt.Sprintf("%s:%d:%d", f.l.d.file, p.line, p.col)
	}
	for _, l := range all {
		p := l.p
		if x := p.X12; x != nil && x.ISA.Qualifier != "" && x.ISA.ID != "" {
			if f, dup := isa[x.ISA]; dup {
				l.d.errf("x12.isa", "%s is already the ISA ID of partner %s (%s)", x.ISA, f.l.p.ID, where(f))
			} else {
				isa[x.ISA] = first{l, "x12.isa"}
			}
		}
		for i, u := range p.Inbound.SFTP {
			if u.User == "" {
				continue
			}
			path := fmt.Sprintf("inbound.sftp[%d].user", i)
			if f, dup := users[u.User]; dup {
				owner := "partner " + f.l.p.ID
				if f.l.p == p {
					owner = "this partner"
				}
				l.d.errf(path, "%q is already an SFTP user of %s (%s)", u.User, owner, where(f))
			} else {
				users[u.User] = first{l, path}
			}
		}
	}
}

// Summary is a one-line description of the partner: ID, status, ISA ID and
// version, documents and channels.
func (p *Partner) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s)", p.ID, p.Status)
	if x := p.X12; x != nil {
		fmt.Fprintf(&b, " isa %s %s %s", x.ISA, x.Version, x.Usage)
	} else {
		b.WriteString(" csv only")
	}
	docs := make([]string, len(p.Documents))
	for i := range p.Documents {
		docs[i] = p.Documents[i].Name()
	}
	fmt.Fprintf(&b, "; documents: %s", strings.Join(docs, ", "))
	var in []string
	for _, u := range p.Inbound.SFTP {
		in = append(in, "sftp user "+u.User)
	}
	for _, pl := range p.Inbound.Polls {
		in = append(in, fmt.Sprintf("poll %s %s", pl.Name, pl.URL))
	}
	if len(in) == 0 {
		in = append(in, "none")
	}
	fmt.Fprintf(&b, "; inbound: %s", strings.Join(in, ", "))
	out := string(p.Outbound.Channel)
	if p.Outbound.Push != nil {
		out += " " + p.Outbound.Push.URL.String()
	}
	fmt.Fprintf(&b, "; outbound: %s", out)
	if p.X12 != nil {
		fmt.Fprintf(&b, "; acks: %s, ta1 %s", p.Acks.Functional, p.Acks.TA1)
	}
	return b.String()
}
