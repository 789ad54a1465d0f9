package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/edigw/edigw/gateway/archive"
	"github.com/edigw/edigw/gateway/erp"
	"github.com/edigw/edigw/gateway/erpsink"
	"github.com/edigw/edigw/gateway/metrics"
	"github.com/edigw/edigw/gateway/outbox"
	"github.com/edigw/edigw/gateway/sftpd"
	"github.com/edigw/edigw/gateway/webhooks"
	"github.com/edigw/edigw/partners"
	"github.com/edigw/edigw/schedules"
	"github.com/edigw/edigw/spool"
)

// Gateway is one running edigw node.
type Gateway struct {
	cfg     *Config
	log     *slog.Logger
	id      string // worker identity in leases and events: host:pid-rand (nodeID)
	store   spool.Store
	blobs   *spool.Tiered
	outbox  *outbox.Dir
	archive archive.Archive
	erp     *erp.Client
	backoff erp.Backoff
	sftp    *sftpd.Server
	sink    *http.Server
	web     *http.Server // API, console, metrics, health
	parts   atomic.Pointer[partners.Set]
	sched   *schedules.Scheduler // nil when schedules are disabled on this node
	metrics *metrics.Metrics
	hooks   *webhooks.Dispatcher // nil in CLI processes (OpenPolls)

	wake chan struct{} // work recorded without being handed over: idle workers look at once
	// files and docs hand records this node created to its workers (nil in
	// CLI processes).
	files, docs *handoff
	controls    *controlBlocks // ack control numbers
	started     time.Time
	inFlight    atomic.Int64 // stages running now (the cluster view)
	// archiveFailed is when an archive put last failed (unix ns): stages
	// then leave archiving to the archive stages for a while.
	archiveFailed atomic.Int64
}

// New opens the spool and builds every component; nothing listens yet.
func New(ctx context.Context, cfg *Config, log *slog.Logger) (*Gateway, error) {
	g, err := OpenPolls(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	set := g.partners()
	// Room for a couple of stages per worker; beyond that, new work waits in
	// the spool, where any node's idle worker claims it. A node must not
	// hoard work it cannot start soon: its peers would sit idle while it
	// waits, and work queued longer than its lease is taken over by them.
	g.files, g.docs = newHandoff(2*cfg.Workers.Files), newHandoff(2*cfg.Workers.Documents)
	if g.outbox, err = outbox.New(cfg.Outbox.Dir); err != nil {
		return nil, err
	}
	if g.archive, err = openArchive(ctx, cfg); err != nil {
		return nil, err
	}
	endpoints, err := cfg.erpEndpoints(set)
	if err != nil {
		return nil, err
	}
	if g.erp, err = erp.NewClient(endpoints, erp.WithLogger(log)); err != nil {
		return nil, err
	}
	g.sftp, err = sftpd.New(sftpd.Config{Addr: cfg.SFTP.Listen, HostKeyDir: cfg.SFTP.HostKeyDir, Users: g.partners,
		Inbox: g, Outbox: g.outbox, MaxFileSize: cfg.SFTP.MaxFileSize, IdleTimeout: cfg.SFTP.IdleTimeout,
		BanAfter: cfg.SFTP.BanAfter, BanFor: cfg.SFTP.BanFor, TempDir: filepath.Join(cfg.DataDir, "uploads"), Logger: log,
		MemoryUpload: spool.InlineMax, // what Accept keeps inline is exactly what the listener holds in memory
		OnLogin: func(partner string, ok bool) {
			g.metrics.SFTPLogins.WithLabelValues(partner, map[bool]string{true: "ok", false: "failed"}[ok]).Inc()
		}})
	if err != nil {
		return nil, err
	}
	if g.hooks, err = g.webhooks(); err != nil {
		return nil, err
	}
	if *cfg.Schedules.Enabled {
		g.sched = schedules.NewScheduler(g.Runner())
		g.sched.Set(Polls(set))
	}
	return g, nil
}

func openArchive(ctx context.Context, cfg *Config) (archive.Archive, error) {
	if cfg.Archive.Kind != "s3" {
		return archive.NewDir(cfg.Archive.Dir)
	}
	s := cfg.Archive.S3
	return archive.NewS3(ctx, archive.S3Config{Bucket: s.Bucket, Prefix: s.Prefix, Region: s.Region, Endpoint: s.Endpoint,
		PathStyle: s.PathStyle, AccessKeyEnv: s.AccessKeyEnv, SecretKeyEnv: s.SecretKeyEnv})
}

// erpEndpoints are the configured endpoints, plus, with the built-in sink,
// every endpoint name a partner document uses that is not configured.
func (c *Config) erpEndpoints(set *partners.Set) ([]erp.Endpoint, error) {
	var eps []erp.Endpoint
	known := map[string]bool{}
	for _, e := range c.ERP.Endpoints {
		eps = append(eps, e.endpoint())
		known[e.Name] = true
	}
	if c.ERP.Sink.Enabled {
		names := []string{c.ERP.AckStatusEndpoint}
		for _, p := range set.Partners() {
			for _, d := range p.Documents {
				names = append(names, d.ERP)
			}
		}
		for _, n := range names {
			if n != "" && !known[n] {
				known[n] = true
				eps = append(eps, erp.Endpoint{Name: n, URL: "http://" + c.ERP.Sink.Listen + "/" + n})
			}
		}
	}
	if n := c.ERP.AckStatusEndpoint; n != "" && !known[n] {
		return nil, fmt.Errorf("erp.ack_status_endpoint %q is not one of erp.endpoints", n)
	}
	return eps, nil
}

// partners returns the current partner profiles (swapped atomically on reload).
func (g *Gateway) partners() *partners.Set { return g.parts.Load() }

func (g *Gateway) owner() spool.Option {
	return func(o *spool.Options) { o.Owner, o.Actor = g.id, g.id }
}

// Store gives tests and the CLI access to the spool.
func (g *Gateway) Store() spool.Store { return g.store }

// Accept implements sftpd.Inbox: the upload is durable once its bytes and
// its record are committed; only then does the client's close succeed. A
// small upload (up to spool.InlineMax) is kept in the spool, committed with
// its record (the commit's fsync is shared with everything committed at
// the same time); a larger one becomes a blob file, fsync'd first.
func (g *Gateway) Accept(ctx context.Context, u sftpd.Upload, f *os.File) (sftpd.Receipt, error) {
	nf := spool.NewFile{Partner: u.PartnerID, Channel: "sftp", Name: u.Name, Actor: "sftp:" + u.User}
	put := func() (spool.BlobRef, error) { return g.blobs.Adopt(ctx, f) }
	if u.Data != nil { // the listener holds up to spool.InlineMax in memory (New)
		nf.Inline = u.Data
		put = func() (spool.BlobRef, error) { return g.blobs.Keep(u.Data), nil }
	}
	id, ref, err := g.spoolFile(ctx, nf, put)
	return sftpd.Receipt{MessageID: string(id), SHA256: ref.SHA256}, err
}

// Scheduler runs the partners' polls; nil when disabled on this node.
func (g *Gateway) Scheduler() *schedules.Scheduler { return g.sched }

// Run serves SFTP (and the ERP sink when enabled) and runs the workers until
// ctx is cancelled; then it stops taking work, lets running stages finish
// (their leases are released by their transitions) and closes the spool.
func (g *Gateway) Run(ctx context.Context) error {
	errc := make(chan error, 3)
	if g.cfg.ERP.Sink.Enabled {
		sink, err := erpsink.NewSink(g.cfg.ERP.Sink.Dir)
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", g.cfg.ERP.Sink.Listen)
		if err != nil {
			return fmt.Errorf("erp sink: %w", err)
		}
		g.sink = &http.Server{Handler: sink, ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- ignoreClosed(g.sink.Serve(ln)) }()
		g.log.Info("ERP sink listening", "addr", ln.Addr().String())
	}
	handler, err := g.httpHandler()
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	hln, err := net.Listen("tcp", g.cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	g.web = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() { errc <- ignoreClosed(g.web.Serve(hln)) }()
	g.log.Info("HTTP listening (API, health)", "addr", hln.Addr().String())
	ln, err := net.Listen("tcp", g.cfg.SFTP.Listen)
	if err != nil {
		return fmt.Errorf("sftp: %w", err)
	}
	g.log.Info("SFTP listening", "addr", ln.Addr().String(), "partners", g.partners().Len())
	go func() { errc <- ignoreClosed(g.sftp.Serve(ln)) }()

	var wg sync.WaitGroup
	work := func(n int, claim func(context.Context) bool, h *handoff, run func(context.Context, handed)) {
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				g.loop(ctx, claim, h, run)
			}()
		}
	}
	g.hooks.Start(ctx, 2)
	work(g.cfg.Workers.Files, g.claimer(spool.KindFile, []spool.State{spool.StateReceived, spool.StateAcked, spool.StateDelivered, spool.StateArchived}, g.runFile),
		g.files, g.runFile)
	work(g.cfg.Workers.Documents, g.claimer(spool.KindDocument, []spool.State{spool.StateMapped, spool.StateDelivered, spool.StateArchived, spool.StateRejected}, g.runDocument),
		g.docs, g.runDocument)
	if g.sched != nil {
		g.sched.Start()
	}
	wg.Add(3)
	go func() {
		defer wg.Done()
		g.watchPartners(ctx)
	}()
	go func() {
		defer wg.Done()
		g.heartbeat(ctx)
	}()
	go func() {
		defer wg.Done()
		t := time.NewTicker(g.cfg.Workers.AckCheck)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				g.checkOverdue(ctx)
			}
		}
	}()

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	g.log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	g.sftp.Shutdown(sctx)
	if g.sched != nil {
		g.sched.Stop(sctx)
	}
	if g.sink != nil {
		g.sink.Shutdown(sctx)
	}
	g.web.Shutdown(sctx)
	wg.Wait()
	g.releaseQueued(sctx, g.files)
	g.releaseQueued(sctx, g.docs)
	g.hooks.Wait()
	return errors.Join(runErr, g.store.Close())
}

// heartbeat tells the other nodes (and the console) this one is alive,
// four times per workers.node_timeout (every 5 s by default), and ends the
// leases of nodes that fell silent (see expireSilent).
func (g *Gateway) heartbeat(ctx context.Context) {
	version := "dev"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		version = bi.Main.Version
	}
	t := time.NewTicker(g.cfg.Workers.NodeTimeout / 4)
	defer t.Stop()
	handled := map[string]bool{}
	for {
		n := spool.Node{ID: g.id, Addr: g.cfg.HTTP.Listen, Version: version, StartedAt: g.started, InFlight: int(g.inFlight.Load())}
		if err := g.store.Heartbeat(ctx, n); err != nil && ctx.Err() == nil {
			g.log.Warn("heartbeat", "err", err)
		}
		g.expireSilent(ctx, handled)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// expireSilent ends the leases of nodes not heard from for
// workers.node_timeout, so their work is taken over now rather than when
// each lease runs out: a gateway restarted after a crash is a new node
// (nodeID), and the stages its predecessor was running would otherwise
// wait out workers.lease (2 minutes by default). The update reads every
// item still in the pipeline, so it runs once per silent node (handled),
// and only for nodes that went silent within the last lease (older leases
// have run out).
func (g *Gateway) expireSilent(ctx context.Context, handled map[string]bool) {
	timeout, lease := g.cfg.Workers.NodeTimeout, g.cfg.Workers.Lease
	if lease <= timeout {
		return
	}
	now := time.Now()
	nodes, err := g.store.ListNodes(ctx, now.Add(-lease-timeout))
	if err != nil {
		if ctx.Err() == nil {
			g.log.Warn("list nodes", "err", err)
		}
		return
	}
	var silent []string
	for _, n := range nodes {
		switch {
		case now.Sub(n.SeenAt) <= timeout:
			delete(handled, n.ID) // heard from again: a later silence counts anew
		case n.ID != g.id && !handled[n.ID]:
			silent = append(silent, n.ID)
		}
	}
	if len(silent) == 0 {
		return
	}
	k, err := g.store.ExpireSilentLeases(ctx, now.Add(-timeout))
	if err != nil {
		if ctx.Err() == nil {
			g.log.Warn("end leases of silent nodes", "nodes", silent, "err", err)
		}
		return
	}
	for _, id := range silent {
		handled[id] = true
	}
	if k > 0 {
		g.log.Warn("leases of silent nodes ended; their work is taken over", "nodes", silent, "leases", k)
		g.wakeWorkers()
	}
}

// watchPartners reloads the partner profiles on SIGHUP and when the folder
// changes.
func (g *Gateway) watchPartners(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var tick <-chan time.Time
	if g.cfg.PartnersReload > 0 {
		t := time.NewTicker(g.cfg.PartnersReload)
		defer t.Stop()
		tick = t.C
	}
	last := partnersDigest(g.cfg.Partners)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			g.log.Info("SIGHUP: reloading partner profiles")
		case <-tick:
			if d := partnersDigest(g.cfg.Partners); d == last {
				continue
			}
			g.log.Info("partner folder changed: reloading", "dir", g.cfg.Partners)
		}
		last = partnersDigest(g.cfg.Partners)
		g.Reload()
	}
}

func ignoreClosed(err error) error {
	if errors.Is(err, sftpd.ErrServerClosed) || errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// loop runs a worker until ctx ends: work handed over in memory first,
// then claims; claim reports whether it found work. Idle workers wait for
// handed-over work, a wake-up or the poll interval.
//
// While work keeps being handed over, every claimEvery-th turn claims
// anyway, so retries and work left to claims do not starve.
func (g *Gateway) loop(ctx context.Context, claim func(context.Context) bool, h *handoff, run func(context.Context, handed)) {
	const claimEvery = 16
	for turn := 1; ctx.Err() == nil; turn++ {
		if turn%claimEvery != 0 {
			select {
			case it := <-h.queue():
				g.runHanded(ctx, h, it, run)
				continue
			default:
			}
		}
		if claim(ctx) {
			continue
		}
		select {
		case <-ctx.Done():
		case it := <-h.queue():
			g.runHanded(ctx, h, it, run)
		case <-g.wake:
		case <-time.After(g.cfg.Workers.Poll):
		}
	}
}

// stageCtx lets a stage finish after shutdown began, within the lease.
func (g *Gateway) stageCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), g.cfg.Workers.Lease)
}

// claimer returns a worker's claim: up to 4 items of kind due in one of
// states, each run by run; it reports whether it found any.
func (g *Gateway) claimer(kind spool.Kind, states []spool.State, run func(context.Context, handed)) func(context.Context) bool {
	return func(ctx context.Context) bool {
		items, err := g.store.Claim(ctx, kind, states, g.id, g.cfg.Workers.Lease, 4)
		if err != nil || len(items) == 0 {
			if err != nil && ctx.Err() == nil {
				g.log.Error("claim", "kind", kind, "err", err)
			}
			return false
		}
		for _, it := range items {
			run(ctx, handed{Item: it})
		}
		return true
	}
}

// runFile runs the stage of a file this node holds the lease of.
func (g *Gateway) runFile(_ context.Context, it handed) {
	g.inFlight.Add(1)
	defer g.inFlight.Add(-1)
	sctx, cancel := g.stageCtx()
	defer cancel()
	f := it.File
	var err error
	start := time.Now()
	switch f.Work.Stage() {
	case spool.StateReceived:
		if f.Direction == spool.Outbound {
			err = g.outboundStage(sctx, f)
			g.metrics.Since("outbound", start)
		} else {
			err = g.fileStage(sctx, f)
			g.metrics.Since("file", start)
		}
	case spool.StateAcked:
		err = g.fileArchiveStage(sctx, f)
	case spool.StateDelivered: // an outbound file delivered, not yet archived
		err = g.outboundStage(sctx, f)
	case spool.StateArchived: // a worker died between archiving and done
		err = g.store.Transition(sctx, f.ID, spool.StateArchived, spool.StateDone, g.owner())
	}
	if err != nil {
		g.stageFailed(sctx, f.ID, f.Work, err)
	}
}

// wakeWorkers makes an idle worker look for work in the spool at once, for
// work recorded without being handed over (a full handoff queue, an
// outbound file, a CSV document).
func (g *Gateway) wakeWorkers() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// runDocument runs the stage of a document this node holds the lease of.
func (g *Gateway) runDocument(_ context.Context, it handed) {
	g.inFlight.Add(1)
	defer g.inFlight.Add(-1)
	sctx, cancel := g.stageCtx()
	defer cancel()
	start := time.Now()
	err := g.documentStage(sctx, it)
	g.metrics.Since("document", start)
	if err != nil {
		g.stageFailed(sctx, it.Document.ID, it.Document.Work, err)
	}
}

// stageFailed schedules another attempt at a stage that failed for a
// reason other than the ERP (disk, archive, a bug), and gives up after
// the backoff's last attempt.
func (g *Gateway) stageFailed(ctx context.Context, id spool.ID, w spool.Work, err error) {
	wait, ok := g.backoff.Next(w.Attempts+1, 0)
	if !ok {
		g.log.Error("stage failed for the last time", "message_id", id, "stage", w.Stage(), "err", err)
		if terr := g.store.Transition(ctx, id, w.Stage(), spool.StateDead, g.owner(), spool.WithReason(err.Error())); terr != nil {
			g.log.Error("could not mark dead", "message_id", id, "err", terr)
		} else if id.Kind() == spool.KindDocument {
			g.hooks.Emit(webhooks.DocumentFailed, string(id), map[string]any{"state": spool.StateDead, "stage": w.Stage(), "reason": err.Error()})
		}
		return
	}
	g.log.Warn("stage failed, will retry", "message_id", id, "stage", w.Stage(), "err", err, "in", wait)
	if rerr := g.store.Retry(ctx, id, err, time.Now().Add(wait), g.owner()); rerr != nil {
		g.log.Error("could not schedule the retry", "message_id", id, "err", rerr)
	}
}
