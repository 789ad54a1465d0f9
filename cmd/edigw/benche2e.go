package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pkg/sftp"
	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"

	"github.com/edigw/edigw/gateway"
	"github.com/edigw/edigw/gateway/erpsink"
)

// benchE2ECmd pushes N small files through SFTP → gateway → ERP sink on
// this machine and prints files/s and the latency from an upload's close
// to the ERP's POST. Durable writes (fsync, SQLite's WAL fsync'd before a
// write is answered, or PostgreSQL commits) are on.
func benchE2ECmd() *cobra.Command {
	var o e2eOptions
	var compare bool
	c := &cobra.Command{
		Use:   "e2e",
		Short: "End-to-end benchmark: N files over SFTP to the ERP sink (files/s, p50/p99 latency)",
		Long: `End-to-end benchmark: N files (one 005010 856 each) uploaded over SFTP to in-process
gateway nodes, delivered to a built-in ERP sink. --spool postgres uses PostgreSQL (the DSN
in $EDIGW_BENCH_POSTGRES, default postgres://postgres@127.0.0.1:5432/test, a fresh schema
dropped after); --nodes N runs N gateway nodes on that database (uploads spread over their
SFTP ports). --compare runs 1 node on SQLite, 1 node on PostgreSQL and 3 nodes on
PostgreSQL one after the other and prints them side by side.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			tuneRuntime() // as edigw serve does
			if !compare {
				_, err := benchE2E(cmd.Context(), cmd.OutOrStdout(), o)
				return err
			}
			var rows []e2eResult
			for _, v := range []struct {
				driver string
				nodes  int
			}{{"sqlite", 1}, {"postgres", 1}, {"postgres", 3}} {
				oo := o
				oo.driver, oo.nodes = v.driver, v.nodes
				r, err := benchE2E(cmd.Context(), cmd.OutOrStdout(), oo)
				if err != nil {
					return err
				}
				rows = append(rows, r)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "\n%-28s %12s %10s %10s %8s\n", "configuration", "sets/s", "p50", "p99", "ratio")
			for _, r := range rows {
				fmt.Fprintf(cmd.OutOrStdout(), "%-28s %12.0f %10s %10s %7.2fx\n", r.name, r.rate, r.p50, r.p99, r.rate/rows[0].rate)
			}
			return nil
		},
	}
	c.Flags().IntVar(&o.n, "files", 500, "files to push (one 856 each)")
	c.Flags().IntVar(&o.conns, "conns", 4, "parallel SFTP connections per node")
	c.Flags().IntVar(&o.sets, "sets", 1, "transaction sets (856s) per file, in one functional group")
	c.Flags().IntVar(&o.nodes, "nodes", 1, "gateway nodes (more than 1 needs --spool postgres)")
	c.Flags().StringVar(&o.driver, "spool", "sqlite", "spool records: sqlite or postgres")
	c.Flags().StringVar(&o.partners, "partners", "deploy/examples/partners", "partner profiles (acme's demo key and 856 sample are used)")
	c.Flags().BoolVar(&compare, "compare", false, "run 1 node on SQLite, 1 on PostgreSQL and 3 on PostgreSQL and compare")
	return c
}

type e2eOptions struct {
	n, conns, nodes int
	sets            int
	driver          string
	partners        string
}

type e2eResult struct {
	name     string
	rate     float64
	p50, p99 time.Duration
}

func benchCmd() *cobra.Command {
	c := &cobra.Command{Use: "bench", Short: "Benchmarks of the running gateway"}
	c.AddCommand(benchE2ECmd(), benchPollCmd())
	return c
}

func benchE2E(ctx context.Context, out io.Writer, o e2eOptions) (e2eResult, error) {
	var res e2eResult
	if o.nodes > 1 && o.driver != "postgres" {
		return res, fmt.Errorf("--nodes %d needs --spool postgres (SQLite has one writer: one node)", o.nodes)
	}
	n, partnersDir := o.n, o.partners
	dir, err := os.MkdirTemp("", "edigw-bench")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	sample, err := os.ReadFile(filepath.Join(partnersDir, "acme", "testdata", "856-two-orders.x12"))
	if err != nil {
		return res, err
	}
	sets := max(1, o.sets)
	if sample, err = repeatSets(sample, sets); err != nil {
		return res, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(partnersDir, "acme", "keys", "demo_ed25519"))
	if err != nil {
		return res, err
	}
	signer, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		return res, err
	}
	schema := ""
	if o.driver == "postgres" {
		dsn := cmp.Or(os.Getenv("EDIGW_BENCH_POSTGRES"), "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
		os.Setenv("EDIGW_BENCH_SPOOL_DSN", dsn)
		schema = fmt.Sprintf("bench_%d", time.Now().UnixNano())
		defer dropSchema(dsn, schema)
	}

	sink, _ := erpsink.NewSink("")
	sinkLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	go (&http.Server{Handler: sink}).Serve(sinkLn)
	level := slog.LevelError
	if os.Getenv("EDIGW_BENCH_LOG") == "info" {
		level = slog.LevelInfo
	}
	quiet := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	// The nodes share the spool, the payloads (one folder: same machine),
	// the outbox, the archive and the host keys.
	var addrs []string
	var writers []writerStats
	gctx, stop := context.WithCancel(ctx)
	var running sync.WaitGroup
	defer func() { stop(); running.Wait() }()
	for i := range o.nodes {
		sftpLn, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return res, err
		}
		addr := sftpLn.Addr().String()
		sftpLn.Close()
		cfg, _ := gateway.LoadConfig("")
		cfg.DataDir, cfg.Partners = filepath.Join(dir, fmt.Sprintf("node%d", i)), partnersDir
		cfg.Spool.Path, cfg.Blobs.Dir, cfg.Outbox.Dir = filepath.Join(dir, "spool.db"), filepath.Join(dir, "blobs"), filepath.Join(dir, "outbox")
		cfg.Archive.Dir, cfg.SFTP.HostKeyDir = filepath.Join(dir, "archive"), filepath.Join(dir, "hostkeys")
		if o.driver == "postgres" {
			cfg.Spool.Driver, cfg.Spool.DSNEnv, cfg.Spool.Schema = "postgres", "EDIGW_BENCH_SPOOL_DSN", schema
		}
		cfg.SFTP.Listen = addr
		cfg.HTTP.Listen = "127.0.0.1:0"
		cfg.ERP.Sink.Enabled, cfg.ERP.AckStatusEndpoint = false, ""
		for _, name := range []string{"po-acknowledgements", "ship-notices", "invoices", "purchase-orders", "inventory"} {
			cfg.ERP.Endpoints = append(cfg.ERP.Endpoints, gateway.EndpointConfig{Name: name, URL: "http://" + sinkLn.Addr().String() + "/" + name, MaxConcurrency: 16})
		}
		// A file's stage mostly waits for the spool's writer and the
		// outbox's and archive's syncs, so workers are cheap: with 12 the
		// pipeline fell far behind the uploads; 32 kept up until the
		// uploads got faster; 64 gave 398-504 sets/s against 354-455 with
		// 32 (1000 files, 16 connections, alternating).
		cfg.Workers.Files, cfg.Workers.Documents = 64, 32
		g, err := gateway.New(ctx, cfg, quiet.With("node", i))
		if err != nil {
			return res, err
		}
		if w, ok := g.Store().(writerStats); ok {
			writers = append(writers, w)
		}
		running.Add(1)
		go func() { defer running.Done(); g.Run(gctx) }()
		for i := 0; ; i++ {
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				break
			} else if i > 100 {
				return res, err
			}
			time.Sleep(50 * time.Millisecond)
		}
		addrs = append(addrs, addr)
	}

	if p := os.Getenv("EDIGW_BENCH_CPUPROFILE"); p != "" { // where the time goes
		f, err := os.Create(p)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	// One file per interchange control number, so none is a duplicate.
	conns := o.conns * o.nodes
	closed := make([]time.Time, n)
	keys := make([]string, n)
	var wg sync.WaitGroup
	errc := make(chan error, conns)
	start := time.Now()
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			client, err := ssh.Dial("tcp", addrs[w%len(addrs)], &ssh.ClientConfig{User: "acme", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
				HostKeyCallback: ssh.InsecureIgnoreHostKey()}) // loopback benchmark against our own fresh host key
			if err != nil {
				errc <- err
				return
			}
			defer client.Close()
			sc, err := sftp.NewClient(client)
			if err != nil {
				errc <- err
				return
			}
			defer sc.Close()
			for i := w; i < n; i += conns {
				ctl := fmt.Sprintf("%09d", 100000+i)
				body := bytes.ReplaceAll(sample, []byte("000004718"), []byte(ctl))
				// Each file its own shipment (BSN02), as real traffic has: with
				// the sample's one, every document mapped to the same JSON,
				// which the spool stored once (no file written for the rest).
				body = bytes.ReplaceAll(body, []byte("*ASN-260305-0417*"), []byte("*ASN-"+ctl+"*"))
				f, err := sc.Create(fmt.Sprintf("/inbox/bench-%05d.x12", i))
				if err != nil {
					errc <- err
					return
				}
				f.Write(body)
				if err := f.Close(); err != nil {
					errc <- err
					return
				}
				closed[i] = time.Now()
				keys[i] = fmt.Sprintf("acme:ZZ-ACMEIND:%s:4718", ctl)
			}
		}(w)
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return res, fmt.Errorf("upload: %w", err)
	}
	uploaded := time.Since(start)
	deadline := time.Now().Add(5 * time.Minute)
	for len(sink.Documents()) < n*sets && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	docs := sink.Documents()
	if len(docs) < n*sets {
		return res, fmt.Errorf("only %d of %d documents reached the ERP in time", len(docs), n*sets)
	}
	at := map[string]time.Time{} // by file: its last set's POST
	last := start
	for _, d := range docs {
		file := d.Key[:strings.LastIndexByte(d.Key, ':')]
		if d.ReceivedAt.After(at[file]) {
			at[file] = d.ReceivedAt
		}
		if d.ReceivedAt.After(last) {
			last = d.ReceivedAt
		}
	}
	lat := make([]time.Duration, 0, n)
	for i, k := range keys {
		lat = append(lat, at[k].Sub(closed[i]))
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(float64(len(lat))*p))] }
	total := last.Sub(start)
	res = e2eResult{name: fmt.Sprintf("%d node(s), %s", o.nodes, o.driver), rate: float64(n*sets) / total.Seconds(),
		p50: pct(0.50).Round(time.Millisecond), p99: pct(0.99).Round(time.Millisecond)}
	fmt.Fprintf(out, "edigw bench e2e: %d files (%d 005010 856s each, %d bytes), %d node(s) on %s, %d SFTP connections, durable spool\n",
		n, sets, len(sample), o.nodes, o.driver, conns)
	fmt.Fprintf(out, "  uploads done in %.2fs; last ERP POST after %.2fs\n", uploaded.Seconds(), total.Seconds())
	fmt.Fprintf(out, "  throughput: %.0f transaction sets/s, %.0f files/s (upload start to last POST)\n", res.rate, float64(n)/total.Seconds())
	fmt.Fprintf(out, "  latency upload close → ERP POST of the file's last set: p50 %s, p99 %s, max %s\n", res.p50, res.p99, lat[len(lat)-1].Round(time.Millisecond))
	for _, w := range writers {
		commits, writes := w.WriterStats()
		fmt.Fprintf(out, "  spool writer: %d writes in %d group commits (%.1f per commit, start-up included)\n", writes, commits, float64(writes)/float64(max(commits, 1)))
	}
	return res, nil
}

// writerStats is the SQLite spool's group-commit counters.
type writerStats interface {
	WriterStats() (commits, writes int64)
}

// dropSchema removes the benchmark's PostgreSQL schema.
func dropSchema(dsn, schema string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return
	}
	defer c.Close(ctx)
	c.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
}

// repeatSets returns the sample interchange with its one transaction set
// repeated n times in its functional group (ST02 0001..n, GE01 n).
func repeatSets(x12 []byte, n int) ([]byte, error) {
	st := bytes.Index(x12, []byte("ST*"))
	ge := bytes.Index(x12, []byte("GE*"))
	if st < 0 || ge < st {
		return nil, errors.New("bench sample: no ST..GE")
	}
	set := x12[st:ge]
	if n == 1 {
		return x12, nil
	}
	var b bytes.Buffer
	b.Write(x12[:st])
	for i := 1; i <= n; i++ {
		ctl := fmt.Sprintf("%04d", i)
		s := bytes.Replace(set, []byte("ST*856*0001"), []byte("ST*856*"+ctl), 1)
		s = bytes.Replace(s, []byte("*0001~"), []byte("*"+ctl+"~"), -1) // SE02
		b.Write(s)
	}
	rest := x12[ge:]
	rest = bytes.Replace(rest, []byte("GE*1*"), []byte(fmt.Sprintf("GE*%d*", n)), 1)
	b.Write(rest)
	return b.Bytes(), nil
}
