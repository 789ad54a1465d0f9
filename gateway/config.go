// Package gateway is the running service: it wires the spool, the SFTP
// listener, the pipeline workers (parse, acknowledge, map, deliver,
// archive), the ERP client and the archive together.
package gateway

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/edigw/edigw/gateway/erp"
	"github.com/edigw/edigw/gateway/ops"
	"github.com/edigw/edigw/partners"
)

// Config is gateway.yaml. Every field has a default, so `edigw serve` with
// no configuration runs a complete gateway on one machine.
type Config struct {
	// DataDir holds everything the gateway writes by default: the spool
	// database and blobs, host keys, outboxes, the local archive.
	DataDir string `yaml:"data_dir"`
	// Partners is the folder of partner profiles.
	Partners string `yaml:"partners"`
	// PartnersReload is how often the folder is checked for changes (they
	// are applied without a restart, as on SIGHUP); default 10s, -1s = only
	// on SIGHUP.
	PartnersReload time.Duration `yaml:"partners_reload"`
	// OurISA is our identity in acknowledgements and 850s when a partner
	// profile sets none.
	OurISA struct {
		Qualifier string `yaml:"qualifier"`
		ID        string `yaml:"id"`
	} `yaml:"our_isa"`

	SFTP struct {
		Listen      string        `yaml:"listen"`       // default :2022
		HostKeyDir  string        `yaml:"host_key_dir"` // default <data>/hostkeys
		MaxFileSize int64         `yaml:"max_file_size"`
		IdleTimeout time.Duration `yaml:"idle_timeout"`
		BanAfter    int           `yaml:"ban_after"`
		BanFor      time.Duration `yaml:"ban_for"`
	} `yaml:"sftp"`

	Spool struct {
		Driver string `yaml:"driver"`  // sqlite (one node, default) or postgres (one or many nodes)
		Path   string `yaml:"path"`    // sqlite: default <data>/spool.db
		DSNEnv string `yaml:"dsn_env"` // postgres: the environment variable holding the connection string
		Schema string `yaml:"schema"`  // postgres: the schema to use (default public)
		// WriterNice: sqlite: the OS priority of the single writer's thread
		// (default -10; 0 leaves it alone). See spool.SQLiteOptions.
		WriterNice *int `yaml:"writer_nice"`
	} `yaml:"spool"`
	Blobs struct {
		Kind string   `yaml:"kind"` // local (default) or s3 (shared by several nodes)
		Dir  string   `yaml:"dir"`  // local: default <data>/blobs
		S3   S3Config `yaml:"s3"`
	} `yaml:"blobs"`
	Outbox struct {
		Dir string `yaml:"dir"` // default <data>/outbox
	} `yaml:"outbox"`

	Archive struct {
		Kind string   `yaml:"kind"` // dir (default) or s3
		Dir  string   `yaml:"dir"`  // default <data>/archive
		S3   S3Config `yaml:"s3"`
	} `yaml:"archive"`

	ERP struct {
		// Endpoints by name, as partner documents refer to them.
		Endpoints []EndpointConfig `yaml:"endpoints"`
		// AckStatusEndpoint, when set, receives a functional-ack status
		// document (functional-ack-status.v1) for every 997/999 a partner
		// sends us; "" = none (the console and API still show them).
		AckStatusEndpoint string `yaml:"ack_status_endpoint"`
		// Sink runs the built-in test ERP and points every endpoint that is
		// not configured at it (the demo and `make run`).
		Sink struct {
			Enabled bool   `yaml:"enabled"`
			Listen  string `yaml:"listen"` // default 127.0.0.1:9090
			Dir     string `yaml:"dir"`    // default <data>/erp-sink
		} `yaml:"sink"`
	} `yaml:"erp"`

	HTTP struct {
		// Listen is the address of the API, console, /metrics and health
		// checks; default :8080.
		Listen string `yaml:"listen"`
		// Tokens are the API and console credentials. With none, an admin
		// token is generated on first start into <data>/admin.token.
		Tokens []TokenConfig `yaml:"tokens"`
	} `yaml:"http"`

	// Webhooks receive CloudEvents about files and documents.
	Webhooks []WebhookConfig `yaml:"webhooks"`

	Schedules struct {
		// Enabled runs the partners' polls on this node (default true).
		Enabled *bool `yaml:"enabled"`
		// Lease is how long a run holds its poll without renewing (a node
		// that dies frees it after this); default 2m.
		Lease time.Duration `yaml:"lease"`
	} `yaml:"schedules"`

	Workers struct {
		Files     int           `yaml:"files"`     // parallel file workers, default 2
		Documents int           `yaml:"documents"` // parallel delivery workers, default 8
		Lease     time.Duration `yaml:"lease"`     // default 2m
		Poll      time.Duration `yaml:"poll"`      // idle poll interval, default 200ms
		AckCheck  time.Duration `yaml:"ack_check"` // how often overdue acks of our 850s are looked for, default 30s
		// A node whose heartbeat is this old is taken for dead: its leases
		// end at once instead of after workers.lease. Nodes heartbeat four
		// times per node_timeout. Default 20s (the console's "alive").
		NodeTimeout time.Duration `yaml:"node_timeout"`
	} `yaml:"workers"`
}

// LoadConfig reads gateway.yaml (unknown keys are errors); "" gives the
// defaults.
func LoadConfig(path string) (*Config, error) {
	c := &Config{}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		if err := yaml.NewDecoder(bytes.NewReader(data), yaml.DisallowUnknownField()).Decode(c); err != nil {
			return nil, fmt.Errorf("%s: %s", path, yaml.FormatError(err, false, true))
		}
	} else {
		c.ERP.Sink.Enabled = true
		c.ERP.AckStatusEndpoint = "functional-acks"
	}
	c.defaults()
	if c.Workers.NodeTimeout < time.Second {
		// Nodes heartbeat four times per node_timeout; shorter would be a
		// spool write every few milliseconds, and a hiccup would end the
		// leases of a live node.
		return nil, fmt.Errorf("%s: workers.node_timeout is %s; it must be at least 1s", path, c.Workers.NodeTimeout)
	}
	return c, nil
}

func (c *Config) defaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.DataDir, "data")
	def(&c.Partners, "deploy/examples/partners")
	def(&c.OurISA.Qualifier, partners.DefaultOurISA.Qualifier)
	def(&c.OurISA.ID, partners.DefaultOurISA.ID)
	def(&c.SFTP.Listen, ":2022")
	def(&c.HTTP.Listen, ":8080")
	def(&c.SFTP.HostKeyDir, filepath.Join(c.DataDir, "hostkeys"))
	def(&c.Spool.Driver, "sqlite")
	def(&c.Spool.Path, filepath.Join(c.DataDir, "spool.db"))
	if c.Spool.WriterNice == nil {
		n := defaultWriterNice
		c.Spool.WriterNice = &n
	}
	def(&c.Blobs.Kind, "local")
	def(&c.Blobs.Dir, filepath.Join(c.DataDir, "blobs"))
	def(&c.Outbox.Dir, filepath.Join(c.DataDir, "outbox"))
	def(&c.Archive.Kind, "dir")
	def(&c.Archive.Dir, filepath.Join(c.DataDir, "archive"))
	def(&c.ERP.Sink.Listen, "127.0.0.1:9090")
	def(&c.ERP.Sink.Dir, filepath.Join(c.DataDir, "erp-sink"))
	if c.SFTP.MaxFileSize <= 0 {
		c.SFTP.MaxFileSize = 256 << 20
	}
	if c.SFTP.IdleTimeout <= 0 {
		c.SFTP.IdleTimeout = 5 * time.Minute
	}
	if c.SFTP.BanAfter == 0 {
		c.SFTP.BanAfter = 5
	}
	if c.SFTP.BanFor <= 0 {
		c.SFTP.BanFor = 15 * time.Minute
	}
	if c.PartnersReload == 0 {
		c.PartnersReload = 10 * time.Second
	}
	if c.Schedules.Enabled == nil {
		on := true
		c.Schedules.Enabled = &on
	}
	if c.Schedules.Lease <= 0 {
		c.Schedules.Lease = 2 * time.Minute
	}
	if c.Workers.Files <= 0 {
		c.Workers.Files = 2
	}
	if c.Workers.Documents <= 0 {
		c.Workers.Documents = 8
	}
	if c.Workers.Lease <= 0 {
		c.Workers.Lease = 2 * time.Minute
	}
	if c.Workers.AckCheck <= 0 {
		c.Workers.AckCheck = 30 * time.Second
	}
	if c.Workers.NodeTimeout <= 0 {
		c.Workers.NodeTimeout = ops.NodeAlive
	}
	if c.Workers.Poll <= 0 {
		c.Workers.Poll = 200 * time.Millisecond
	}
}

// WebhookConfig is one webhook subscriber: events (file.received,
// document.delivered, document.failed, ack.received, ack.overdue; none =
// all) POSTed to URL as CloudEvents, signed with the secret (HMAC-SHA256).
type WebhookConfig struct {
	Name       string   `yaml:"name"`
	URL        string   `yaml:"url"`
	SecretEnv  string   `yaml:"secret_env"`
	SecretFile string   `yaml:"secret_file"`
	Events     []string `yaml:"events"`
}

// S3Config locates a bucket on AWS or any S3-compatible server; the keys
// are environment variable names (both empty: the SDK's default chain).
type S3Config struct {
	Bucket       string `yaml:"bucket"`
	Prefix       string `yaml:"prefix"`
	Region       string `yaml:"region"`
	Endpoint     string `yaml:"endpoint"`
	PathStyle    bool   `yaml:"path_style"`
	AccessKeyEnv string `yaml:"access_key_env"`
	SecretKeyEnv string `yaml:"secret_key_env"`
}

// TokenConfig is one API token: a name (shown in the audit log), a role
// (viewer, operator, admin) and the secret by reference.
type TokenConfig struct {
	Name      string `yaml:"name"`
	Role      string `yaml:"role"`
	TokenEnv  string `yaml:"token_env"`
	TokenFile string `yaml:"token_file"`
}

// EndpointConfig is one ERP endpoint in gateway.yaml. Secrets are
// references (environment variable or file), never values.
type EndpointConfig struct {
	Name           string            `yaml:"name"`
	URL            string            `yaml:"url"`
	Timeout        time.Duration     `yaml:"timeout"`
	MaxConcurrency int               `yaml:"max_concurrency"`
	RatePerSecond  float64           `yaml:"rate_per_second"`
	Burst          int               `yaml:"burst"`
	Headers        map[string]string `yaml:"headers"`
	Auth           struct {
		Kind             string   `yaml:"kind"` // none, bearer, basic, oauth2
		TokenEnv         string   `yaml:"token_env"`
		TokenFile        string   `yaml:"token_file"`
		Username         string   `yaml:"username"`
		PasswordEnv      string   `yaml:"password_env"`
		PasswordFile     string   `yaml:"password_file"`
		TokenURL         string   `yaml:"token_url"`
		ClientID         string   `yaml:"client_id"`
		ClientSecretEnv  string   `yaml:"client_secret_env"`
		ClientSecretFile string   `yaml:"client_secret_file"`
		Scopes           []string `yaml:"scopes"`
	} `yaml:"auth"`
}

func (e EndpointConfig) endpoint() erp.Endpoint {
	a := e.Auth
	return erp.Endpoint{Name: e.Name, URL: e.URL, Timeout: e.Timeout, MaxConcurrency: e.MaxConcurrency,
		RatePerSecond: e.RatePerSecond, Burst: e.Burst, Headers: e.Headers,
		Auth: erp.Auth{Kind: a.Kind, TokenEnv: a.TokenEnv, TokenFile: a.TokenFile, Username: a.Username,
			PasswordEnv: a.PasswordEnv, PasswordFile: a.PasswordFile, TokenURL: a.TokenURL, ClientID: a.ClientID,
			ClientSecretEnv: a.ClientSecretEnv, ClientSecretFile: a.ClientSecretFile, Scopes: a.Scopes}}
}

// defaultWriterNice raises the spool writer's thread above the rest of the
// gateway: every write waits for that one thread, and on a busy machine it
// waited for the CPU behind the work that waits for it. In bench e2e (1000
// files, 16 connections, run as root), alternating: nice -10 536-598
// sets/s, -5 501-549, unchanged 414-513.
const defaultWriterNice = -10
