// Package partners loads and validates trading-partner profiles: one folder
// per partner, partners/<id>/partner.yaml, holding the partner's X12
// identity, acknowledgement policy, inbound channels (users of our SFTP
// listener, servers we poll), outbound channel, the documents exchanged with
// their mapping specs and ERP endpoints, and implementation-guide overlays.
//
// The package only reads and checks configuration: it opens no connection,
// starts no goroutine and holds no global state. LoadDir returns a fresh,
// immutable Set each time, so a reload is a call to LoadDir and an atomic
// swap of the pointer.
//
// Secrets are never part of a profile: the YAML names an environment
// variable (*_env) or a file (*_file), kept as a SecretRef and read only
// when the caller asks (SecretRef.Resolve).
package partners

import (
	"fmt"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/edigw/edigw/edi"
	"github.com/edigw/edigw/edi/spec"
	"github.com/edigw/edigw/mapping"
	"github.com/robfig/cron/v3"
	"golang.org/x/crypto/ssh"
)

// Status says whether a partner takes part in traffic.
type Status string

const (
	StatusActive   Status = "active"   // production traffic
	StatusTesting  Status = "testing"  // onboarding: files are processed, the gateway decides what is delivered
	StatusDisabled Status = "disabled" // files are refused; the profile is kept
)

// Partner is one trading partner's profile, loaded from <root>/<id>/partner.yaml
// with defaults applied. It is read-only once loaded.
type Partner struct {
	ID     string // [a-z0-9-]+, equal to the folder name
	Name   string
	Status Status
	Dir    string // the partner folder; relative paths of the profile are relative to it
	File   string // path of partner.yaml

	// X12 is the partner's X12 identity; nil for a partner that only
	// exchanges CSV files.
	X12 *X12
	// Acks is the acknowledgement policy (meaningful for X12 partners).
	Acks      Acks
	Inbound   Inbound
	Outbound  Outbound
	Documents []Document
	// Overlays are the partner's implementation-guide rules, as written.
	Overlays []spec.Overlay
	// Sets holds, for every transaction set that has an overlay, the
	// partner's version of the set with the overlay applied. Use
	// TransactionSet to get a set with or without overlay.
	Sets map[string]*spec.Set
}

// X12 is a partner's X12 identity and envelope settings.
type X12 struct {
	ISA  ISAID  // the partner's ISA05/ISA06 (sender of what they send us)
	GSID string // the partner's GS02 application sender code
	// Version is "004010" or "005010": what we send, and the family we expect.
	Version string
	// Usage is the ISA15 usage indicator we send and expect: "P" or "T".
	Usage string
	// OurISA and OurGSID are our identity toward this partner; zero means the
	// gateway-wide default.
	OurISA  ISAID
	OurGSID string
	// Delimiters are the ones we write to this partner (edi.DefaultDelimiters
	// unless configured; Repetition is 0 for 004010, whose ISA11 is "U").
	Delimiters edi.Delimiters
	// Newline writes a line break after every segment terminator.
	Newline bool
}

// ISAID is an interchange ID qualifier and ID (ISA05/06 or ISA07/08),
// without the space padding of the ISA segment.
type ISAID struct {
	Qualifier string // 2 characters, e.g. "ZZ", "01", "12"
	ID        string // 1-15 characters
}

// IsZero reports whether the ID is unset.
func (i ISAID) IsZero() bool { return i.Qualifier == "" && i.ID == "" }

func (i ISAID) String() string { return i.Qualifier + "/" + i.ID }

// FunctionalAck is the functional acknowledgement we send for accepted
// groups: "997", "999" or "none".
type FunctionalAck string

const (
	Ack997  FunctionalAck = "997"
	Ack999  FunctionalAck = "999"
	AckNone FunctionalAck = "none"
)

// TA1Policy says when we answer an interchange with a TA1.
type TA1Policy string

const (
	TA1Always    TA1Policy = "always"
	TA1OnRequest TA1Policy = "on_request" // ISA14 = 1, or the envelope is bad
	TA1OnError   TA1Policy = "on_error"   // only when the envelope is bad
	TA1Never     TA1Policy = "never"
)

// Acks is a partner's acknowledgement policy.
type Acks struct {
	// Functional is what we send: default 997 for 004010 and 999 for 005010.
	Functional FunctionalAck
	TA1        TA1Policy // default on_request
	// DuplicateWindow: an interchange whose ISA13 was seen from this partner
	// within the window is a duplicate (default 720h).
	DuplicateWindow time.Duration
	// ExpectAckWithin is the deadline for the partner's 997/999 to what we
	// send them (default 24h); 0 means we expect no acknowledgements.
	ExpectAckWithin time.Duration
}

// Inbound lists how a partner's files reach us.
type Inbound struct {
	SFTP  []SFTPUser // accounts on our SFTP listener
	Polls []Poll     // servers we poll on a schedule
}

// SFTPUser is an account on our SFTP listener.
type SFTPUser struct {
	User string // unique across all partners
	// PasswordHash references a bcrypt hash of the password (never the
	// password); zero when the user authenticates by key only.
	PasswordHash SecretRef
	// PublicKeys are the accepted client keys: the inline public_keys and the
	// lines of PublicKeysFile.
	PublicKeys     []ssh.PublicKey
	PublicKeysFile string // as written; relative to the partner folder
	// AllowedNetworks restricts client addresses; empty means any.
	AllowedNetworks []netip.Prefix
	// LegacyAlgorithms opts this user in to old algorithms (ssh-rsa with
	// SHA-1 signatures and the like) for old clients.
	LegacyAlgorithms bool
	MaxSessions      int // concurrent sessions, default 4
}

// Allowed reports whether a client address may log in as this user.
func (u *SFTPUser) Allowed(addr netip.Addr) bool {
	if len(u.AllowedNetworks) == 0 {
		return true
	}
	addr = addr.Unmap()
	for _, p := range u.AllowedNetworks {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// Scheme values of an Endpoint.
const (
	SchemeSFTP  = "sftp"
	SchemeFTP   = "ftp"
	SchemeFTPS  = "ftps"  // FTP over implicit TLS (default port 990)
	SchemeFTPES = "ftpes" // FTP with explicit TLS, AUTH TLS (default port 21)
	SchemeS3    = "s3"
	SchemeFile  = "file"
)

// Endpoint is a parsed poll or push URL.
type Endpoint struct {
	Scheme string // sftp, ftp, ftps, ftpes, s3 or file
	User   string // the user name written in the URL (sftp, ftp*), if any
	Host   string // server name or address (sftp, ftp*); "" for s3 and file
	Port   int    // explicit or the scheme's default; 0 for s3 and file
	// Path is the remote directory (sftp, ftp*; "" means the login
	// directory) or the local directory (file, absolute).
	Path string
	// Bucket and Prefix locate s3 objects; Prefix is "" or ends in "/".
	Bucket, Prefix string
}

func (e Endpoint) String() string {
	switch e.Scheme {
	case SchemeS3:
		return "s3://" + e.Bucket + "/" + e.Prefix
	case SchemeFile:
		return "file://" + e.Path
	case "":
		return ""
	}
	host := e.Host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if e.User != "" {
		host = e.User + "@" + host
	}
	return e.Scheme + "://" + host + ":" + strconv.Itoa(e.Port) + e.Path
}

// Remote is a server we connect to: a poll source or a push destination,
// with its credentials by reference.
type Remote struct {
	URL      Endpoint
	Username string // sftp, ftp*
	Password SecretRef
	// PrivateKey is the client key for sftp (PEM/OpenSSH, unencrypted).
	PrivateKey SecretRef
	// HostKey is the pinned SHA256 fingerprint of the sftp server's host key
	// ("SHA256:..."), or "" when KnownHostsFile is used. One is required.
	HostKey        string
	KnownHostsFile string
	CAFile         string // ftps/ftpes: PEM bundle of a private CA
	// S3 credentials; both zero means the SDK's default chain (instance role,
	// environment).
	AccessKey, SecretKey SecretRef
	Region               string // s3: default from the SDK's environment
	S3Endpoint           string // s3: custom S3-API server URL ("" = AWS)
}

// FetchAction is what a poller does with a remote file once it is safely
// spooled.
type FetchAction string

const (
	FetchDelete FetchAction = "delete"
	FetchMove   FetchAction = "move" // into AfterFetch.Dir
	FetchKeep   FetchAction = "keep" // leave it; remember what was fetched
)

// AfterFetch is a poll's after_fetch setting.
type AfterFetch struct {
	Action FetchAction
	Dir    string // for FetchMove: the remote directory (s3: key prefix)
}

// Poll is a server we poll on a schedule.
type Poll struct {
	Name string // unique within the partner
	Remote
	Schedule string        // cron expression as written (seconds field optional)
	Cron     cron.Schedule // Schedule parsed, in Location
	Location *time.Location
	Jitter   time.Duration // random delay added to each run
	Pattern  string        // glob on the file name, default "*"
	// A file is fetched once its size and modification time have not changed
	// for StableFor or, when TriggerSuffix is set, once a file named like it
	// plus TriggerSuffix exists (the trigger file is removed with it).
	StableFor     time.Duration
	TriggerSuffix string
	AfterFetch    AfterFetch
	MaxFiles      int // per run, default 100
}

// Channel is how files we send reach the partner.
type Channel string

const (
	ChannelOutbox Channel = "outbox" // the partner collects them from our SFTP listener
	ChannelPush   Channel = "push"   // we upload them to the partner's server
)

// Outbound is how acknowledgements and our documents reach the partner.
type Outbound struct {
	Channel Channel
	Push    *Remote // the destination; set when Channel is push
	// Naming is the file name pattern; placeholders {type} {control}
	// {partner} {date} {time} {ext}. Default "{type}_{control}.{ext}".
	Naming string
}

// Format is the format of a document's file.
type Format string

const (
	FormatX12 Format = "x12"
	FormatCSV Format = "csv"
)

// Direction is the direction of a document.
type Direction string

const (
	DirectionInbound  Direction = "inbound"  // partner → us → ERP
	DirectionOutbound Direction = "outbound" // ERP → us → partner
)

// Document is one kind of document exchanged with the partner.
type Document struct {
	Format    Format
	Set       string // X12 transaction set ("856") for x12 documents
	Feed      string // feed name for csv documents
	Match     string // csv: glob on the file name that selects this feed
	Direction Direction
	MapFile   string       // as written, relative to the partner folder
	Map       *mapping.Map // the loaded mapping spec
	ERP       string       // ERP endpoint name (inbound documents)
}

// Name is a short label: "856 inbound", "csv inventory".
func (d *Document) Name() string {
	if d.Format == FormatCSV {
		return "csv " + d.Feed
	}
	return d.Set + " " + string(d.Direction)
}

// TransactionSet returns the spec of X12 transaction set id for this
// partner: with the partner's overlay applied if there is one, else the
// standard set of the partner's version. It returns nil for a partner
// without X12 or a set the version does not define.
func (p *Partner) TransactionSet(id string) *spec.Set {
	if s, ok := p.Sets[id]; ok {
		return s
	}
	if p.X12 == nil {
		return nil
	}
	return spec.Default(p.X12.Version).Set(id)
}

// X12Document returns the partner's x12 document for transaction set id in
// direction dir, or nil.
func (p *Partner) X12Document(id string, dir Direction) *Document {
	for i := range p.Documents {
		d := &p.Documents[i]
		if d.Format == FormatX12 && d.Set == id && d.Direction == dir {
			return d
		}
	}
	return nil
}

// CSVDocument returns the first csv feed whose Match accepts fileName (a
// base name), or nil.
func (p *Partner) CSVDocument(fileName string) *Document {
	for i := range p.Documents {
		d := &p.Documents[i]
		if d.Format == FormatCSV {
			if ok, _ := path.Match(d.Match, fileName); ok {
				return d
			}
		}
	}
	return nil
}

// SecretRef names where a secret lives: an environment variable or a file.
// It never holds the secret itself.
type SecretRef struct {
	Env  string // environment variable name
	File string // file path as written; relative paths are relative to the partner folder
	// Field says what the secret is, for error messages:
	// "partner acme: inbound.polls[0].password_env".
	Field string
}

// IsZero reports whether no secret is referenced.
func (r SecretRef) IsZero() bool { return r.Env == "" && r.File == "" }

// String describes the reference (never the value): "env ACME_PW",
// "file keys/x".
func (r SecretRef) String() string {
	switch {
	case r.Env != "":
		return "env " + r.Env
	case r.File != "":
		return "file " + r.File
	}
	return "none"
}

// Resolve reads the secret: the environment variable, or the file (relative
// to baseDir unless absolute) with one trailing newline removed. An unset
// or empty variable, or an unreadable file, is an error naming the field;
// errors never contain the value.
func (r SecretRef) Resolve(baseDir string) (string, error) {
	what := r.Field
	if what == "" {
		what = "secret"
	}
	switch {
	case r.Env != "":
		v, ok := os.LookupEnv(r.Env)
		if !ok {
			return "", fmt.Errorf("%s: environment variable %s is not set", what, r.Env)
		}
		if v == "" {
			return "", fmt.Errorf("%s: environment variable %s is empty", what, r.Env)
		}
		return v, nil
	case r.File != "":
		name := r.File
		if !filepath.IsAbs(name) {
			name = filepath.Join(baseDir, name)
		}
		b, err := os.ReadFile(name)
		if err != nil {
			if pe, ok := err.(*os.PathError); ok {
				err = pe.Err // the path is named below
			}
			return "", fmt.Errorf("%s: cannot read %s: %v", what, name, err)
		}
		s := string(b)
		if strings.HasSuffix(s, "\r\n") {
			s = s[:len(s)-2]
		} else {
			s = strings.TrimSuffix(s, "\n")
		}
		if s == "" {
			return "", fmt.Errorf("%s: %s is empty", what, name)
		}
		return s, nil
	}
	return "", fmt.Errorf("%s: no secret configured", what)
}
