package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/edigw/edigw/gateway/metrics"
	"github.com/edigw/edigw/gateway/transport"
	"github.com/edigw/edigw/gateway/webhooks"
	"github.com/edigw/edigw/partners"
	"github.com/edigw/edigw/schedules"
	"github.com/edigw/edigw/spool"
)

// Polls turns the partners' poll channels into schedules.Polls: the
// transport for the URL and the settings of the profile. Disabled partners
// are not polled.
func Polls(set *partners.Set) []schedules.Poll {
	var out []schedules.Poll
	for _, p := range set.Partners() {
		if p.Status == partners.StatusDisabled {
			continue
		}
		for _, pc := range p.Inbound.Polls {
			remote, dir := pc.Remote, p.Dir
			sp := schedules.Poll{Partner: p.ID, Name: pc.Name, Where: pc.URL.String(), Schedule: pc.Cron,
				Jitter: pc.Jitter, Pattern: pc.Pattern, StableFor: pc.StableFor, TriggerSuffix: pc.TriggerSuffix,
				After: schedules.Action(pc.AfterFetch.Action), MoveDir: pc.AfterFetch.Dir, MaxFiles: pc.MaxFiles,
				Concurrency: fetchConcurrency(pc.URL.Scheme),
				Dial: func(ctx context.Context) (schedules.Remote, error) {
					t, err := transport.Dial(ctx, remote, transport.Options{BaseDir: dir})
					if err != nil {
						return nil, err
					}
					return pollRemote{t}, nil
				}}
			out = append(out, sp)
		}
	}
	return out
}

// fetchConcurrency is how many files a poll fetches at once: SFTP and S3
// multiplex requests over one connection, an FTP control connection carries
// one transfer at a time.
func fetchConcurrency(scheme string) int {
	switch scheme {
	case partners.SchemeSFTP, partners.SchemeS3:
		return 32 // enough to overlap the per-file fsyncs (measured with edigw bench poll)
	case partners.SchemeFile:
		return 4
	}
	return 1
}

// pollRemote adapts a transport to what a poll needs.
type pollRemote struct{ transport.Transport }

func (r pollRemote) List(ctx context.Context) ([]schedules.File, error) {
	fs, err := r.Transport.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]schedules.File, len(fs))
	for i, f := range fs {
		out[i] = schedules.File{Name: f.Name, Size: f.Size, ModTime: f.ModTime}
	}
	return out, nil
}

// Runner is the poll runner of this node: fetched files go into the spool
// like uploads do.
func (g *Gateway) Runner() *schedules.Runner {
	return &schedules.Runner{Store: g.store, Sink: g.acceptPolled, Owner: g.id, Log: g.log, Lease: g.cfg.Schedules.Lease,
		OnRun: func(r spool.PollRun) {
			g.metrics.PollRuns.WithLabelValues(r.Partner, r.Poll, string(r.Status)).Inc()
			g.metrics.PollFiles.WithLabelValues(r.Partner, r.Poll).Add(float64(r.Fetched))
		}}
}

// acceptPolled is the schedules.Sink: the file is durable (its bytes and
// record committed) before the poll deletes or moves the remote copy. A
// small file is kept inline in the spool, as a small upload is.
func (g *Gateway) acceptPolled(ctx context.Context, f schedules.Fetched, r io.Reader) (spool.ID, error) {
	meta, _ := json.Marshal(map[string]any{"poll": f.Poll, "remote_size": f.Size, "remote_mtime": f.ModTime.UTC()})
	nf := spool.NewFile{Partner: f.Partner, Channel: "poll", Name: f.Name,
		RemotePath: f.Where + "/" + f.Name, Meta: meta, Actor: "poll:" + f.Poll}
	head, err := io.ReadAll(io.LimitReader(r, spool.InlineMax+1))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", f.Name, err)
	}
	put := func() (spool.BlobRef, error) { return g.blobs.Put(ctx, io.MultiReader(bytes.NewReader(head), r)) }
	if len(head) <= spool.InlineMax {
		nf.Inline = head
		put = func() (spool.BlobRef, error) { return g.blobs.Keep(head), nil }
	}
	id, _, err := g.spoolFile(ctx, nf, put)
	if err == nil && killAfterPollSpool {
		// Fault injection for the crash test: die in the worst window, the
		// file spooled and the remote copy still there.
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
	}
	return id, err
}

// killAfterPollSpool is set by the fault-injection test only
// (EDIGW_TEST_FAULT=kill-after-poll-spool).
var killAfterPollSpool = os.Getenv("EDIGW_TEST_FAULT") == "kill-after-poll-spool"

// spoolFile records a received file of nf.Partner, whose bytes put stores
// durably, and wakes the workers.
func (g *Gateway) spoolFile(ctx context.Context, nf spool.NewFile, put func() (spool.BlobRef, error)) (spool.ID, spool.BlobRef, error) {
	p := g.partners().ByID(nf.Partner)
	if p == nil {
		return "", spool.BlobRef{}, fmt.Errorf("partner %s is not configured", nf.Partner)
	}
	ref, err := put()
	if err != nil {
		return "", spool.BlobRef{}, fmt.Errorf("spool blob: %w", err)
	}
	nf.Blob, nf.ReceivedAt, nf.DedupeWindow = ref, time.Now(), p.Acks.DuplicateWindow
	reserved := g.files.reserve()
	if reserved {
		nf.Lease = g.lease()
	}
	f, err := g.store.AddFile(ctx, nf)
	if err != nil {
		if reserved {
			g.files.cancel()
		}
		return "", ref, fmt.Errorf("spool record: %w", err)
	}
	switch {
	case !reserved:
		defer g.wakeWorkers()
	case f.Work.LeaseOwner == g.id:
		g.files.put(handed{Item: spool.Item{Kind: spool.KindFile, File: &f}})
	default:
		g.files.cancel() // a duplicate: there is no work on it
	}
	g.metrics.FilesReceived.WithLabelValues(p.ID, nf.Channel, string(f.State)).Inc()
	g.hooks.Emit(webhooks.FileReceived, string(f.ID), map[string]any{"partner": p.ID, "channel": nf.Channel, "name": nf.Name,
		"size": ref.Size, "sha256": ref.SHA256, "state": f.State, "duplicateOf": f.DuplicateOf})
	g.log.Info("file received", "message_id", f.ID, "partner", p.ID, "channel", nf.Channel, "file", nf.Name,
		"size", ref.Size, "sha256", ref.SHA256, "state", f.State)
	return f.ID, ref, nil
}

// Reload reads the partner profiles again and applies them: the SFTP
// listener sees the new users at their next login, the schedules are
// updated. A folder that does not load is reported and the running profiles
// are kept.
func (g *Gateway) Reload() error {
	set, err := partners.LoadDir(g.cfg.Partners)
	if err != nil {
		g.log.Error("partner profiles not reloaded; the running ones stay", "dir", g.cfg.Partners, "err", err)
		return err
	}
	g.parts.Store(set)
	if g.sched != nil {
		g.sched.Set(Polls(set))
	}
	g.log.Info("partner profiles reloaded", "partners", set.Len())
	return nil
}

// partnersDigest fingerprints the partner folder (names, sizes and
// modification times), to notice changes without a notification API.
func partnersDigest(dir string) string {
	h := sha256.New()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			fmt.Fprintf(h, "%s err\n", p)
			return nil
		}
		if info, err := d.Info(); err == nil {
			fmt.Fprintf(h, "%s %d %d\n", p, info.Size(), info.ModTime().UnixNano())
		}
		return nil
	})
	return fmt.Sprintf("%x", h.Sum(nil))
}

// nodeID is this process's identity in leases and events: host:pid and a
// random suffix, because in a container every start is PID 1 on the same
// host name, and a restarted gateway must not pass for its predecessor (the
// predecessor's leases would neither be claimable nor be ended as a silent
// node's, see expireSilent).
func nodeID() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s:%d-%04x", host, os.Getpid(), rand.Uint32()&0xffff)
}

// OpenPolls opens what a one-off poll run needs, without listeners or
// workers (the CLI's `schedules run-now`): the partner profiles, the spool
// and its blobs. A running gateway's workers pick up what it spools. Close
// the store when done.
func OpenPolls(ctx context.Context, cfg *Config, log *slog.Logger) (*Gateway, error) {
	g := &Gateway{cfg: cfg, log: log, id: nodeID(), wake: make(chan struct{}, 1), started: time.Now()}
	set, err := partners.LoadDir(cfg.Partners)
	if err != nil {
		return nil, fmt.Errorf("partners %s: %w", cfg.Partners, err)
	}
	g.parts.Store(set)
	g.metrics = metrics.New(func(ctx context.Context) (map[string]map[string]int, error) {
		d, err := g.store.Depth(ctx)
		out := map[string]map[string]int{}
		for k, states := range d {
			out[string(k)] = map[string]int{}
			for st, n := range states {
				out[string(k)][string(st)] = n
			}
		}
		return out, err
	}, log)
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, err
	}
	files, err := openBlobs(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if g.store, err = OpenStore(ctx, cfg); err != nil {
		return nil, err
	}
	if w, ok := g.store.(interface{ WriterPriority() (int, error) }); ok {
		if nice, err := w.WriterPriority(); err != nil {
			log.Info("spool writer at normal priority (spool.writer_nice needs CAP_SYS_NICE or systemd's LimitNICE=)", "err", err)
		} else if nice != 0 {
			log.Info("spool writer priority raised", "nice", nice)
		}
	}
	g.blobs = &spool.Tiered{Inline: g.store, Blobs: files}
	g.controls = newControlBlocks(g.store, ackControlBlock)
	return g, nil
}

// ackControlBlock is how many ack control numbers a node reserves at once.
const ackControlBlock = 10

// Partners returns the loaded partner profiles.
func (g *Gateway) Partners() *partners.Set { return g.partners() }

// openBlobs opens the payload store: a local directory (one node) or an S3
// bucket every node shares.
func openBlobs(ctx context.Context, cfg *Config) (spool.Blobs, error) {
	switch cfg.Blobs.Kind {
	case "local":
		return spool.NewLocal(cfg.Blobs.Dir)
	case "s3":
		b, err := spool.NewS3Blobs(ctx, spool.S3BlobsConfig(cfg.Blobs.S3))
		if err != nil {
			return nil, fmt.Errorf("blobs s3: %w", err)
		}
		if err := b.Check(ctx); err != nil {
			return nil, fmt.Errorf("blobs s3: %w", err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("blobs.kind %q is not local or s3", cfg.Blobs.Kind)
}

// OpenStore opens (and migrates) the configured spool records: SQLite for
// one node, PostgreSQL for one or many.
func OpenStore(ctx context.Context, cfg *Config) (spool.Store, error) {
	switch cfg.Spool.Driver {
	case "sqlite":
		var nice int
		if cfg.Spool.WriterNice != nil {
			nice = *cfg.Spool.WriterNice
		}
		st, err := spool.OpenSQLite(ctx, cfg.Spool.Path, &spool.SQLiteOptions{WriterNice: nice})
		if err != nil {
			return nil, fmt.Errorf("spool %s: %w", cfg.Spool.Path, err)
		}
		return st, nil
	case "postgres":
		if cfg.Spool.DSNEnv == "" {
			return nil, errors.New("spool.driver postgres needs spool.dsn_env: the environment variable with the connection string")
		}
		dsn := os.Getenv(cfg.Spool.DSNEnv)
		if dsn == "" {
			return nil, fmt.Errorf("spool: environment variable %s (spool.dsn_env) is empty", cfg.Spool.DSNEnv)
		}
		st, err := spool.OpenPostgres(ctx, dsn, &spool.PostgresOptions{Schema: cfg.Spool.Schema})
		if err != nil {
			return nil, fmt.Errorf("spool postgres (%s): %w", cfg.Spool.DSNEnv, err)
		}
		return st, nil
	}
	return nil, fmt.Errorf("spool.driver %q is not sqlite or postgres", cfg.Spool.Driver)
}
