package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"

	"github.com/edigw/edigw/gateway"
	"github.com/edigw/edigw/gateway/erpsink"
)

// benchE2ECmd pushes N small files through SFTP → gateway → ERP sink on
// this machine and prints files/s and the latency from an upload's close
// to the ERP's POST. Durable writes (fsync, SQLite synchronous=FULL) are on.
func benchE2ECmd() *cobra.Command {
	var n, conns int
	var partnersDir string
	c := &cobra.Command{
		Use:   "e2e",
		Short: "End-to-end benchmark: N files over SFTP to the ERP sink (files/s, p50/p99 latency)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return benchE2E(cmd.Context(), cmd.OutOrStdout(), partnersDir, n, conns)
		},
	}
	c.Flags().IntVar(&n, "files", 500, "files to push (one 856 each)")
	c.Flags().IntVar(&conns, "conns", 4, "parallel SFTP connections")
	c.Flags().StringVar(&partnersDir, "partners", "deploy/examples/partners", "partner profiles (acme's demo key and 856 sample are used)")
	return c
}

func benchCmd() *cobra.Command {
	c := &cobra.Command{Use: "bench", Short: "Benchmarks of the running gateway"}
	c.AddCommand(benchE2ECmd(), benchPollCmd())
	return c
}

func benchE2E(ctx context.Context, out interface{ Write([]byte) (int, error) }, partnersDir string, n, conns int) error {
	dir, err := os.MkdirTemp("", "edigw-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sample, err := os.ReadFile(filepath.Join(partnersDir, "acme", "testdata", "856-two-orders.x12"))
	if err != nil {
		return err
	}
	keyPEM, err := os.ReadFile(filepath.Join(partnersDir, "acme", "keys", "demo_ed25519"))
	if err != nil {
		return err
	}
	signer, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		return err
	}

	sink, _ := erpsink.NewSink("")
	sinkLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go (&http.Server{Handler: sink}).Serve(sinkLn)
	sftpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	sftpAddr := sftpLn.Addr().String()
	sftpLn.Close()

	cfg, _ := gateway.LoadConfig("")
	cfg.DataDir, cfg.Partners = dir, partnersDir
	cfg.Spool.Path, cfg.Blobs.Dir, cfg.Outbox.Dir = filepath.Join(dir, "spool.db"), filepath.Join(dir, "blobs"), filepath.Join(dir, "outbox")
	cfg.Archive.Dir, cfg.SFTP.HostKeyDir = filepath.Join(dir, "archive"), filepath.Join(dir, "hostkeys")
	cfg.SFTP.Listen = sftpAddr
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.ERP.Sink.Enabled = false
	for _, name := range []string{"po-acknowledgements", "ship-notices", "invoices", "purchase-orders", "inventory"} {
		cfg.ERP.Endpoints = append(cfg.ERP.Endpoints, gateway.EndpointConfig{Name: name, URL: "http://" + sinkLn.Addr().String() + "/" + name, MaxConcurrency: 16})
	}
	cfg.Workers.Files, cfg.Workers.Documents = 12, 32
	level := slog.LevelError
	if os.Getenv("EDIGW_BENCH_LOG") == "info" {
		level = slog.LevelInfo
	}
	quiet := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	g, err := gateway.New(ctx, cfg, quiet)
	if err != nil {
		return err
	}
	gctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- g.Run(gctx) }()
	defer func() { stop(); <-done }()
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", sftpAddr); err == nil {
			c.Close()
			break
		} else if i > 100 {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}

	if p := os.Getenv("EDIGW_BENCH_CPUPROFILE"); p != "" { // where the time goes
		f, err := os.Create(p)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	// One file per interchange control number, so none is a duplicate.
	closed := make([]time.Time, n)
	keys := make([]string, n)
	var wg sync.WaitGroup
	errc := make(chan error, conns)
	start := time.Now()
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			client, err := ssh.Dial("tcp", sftpAddr, &ssh.ClientConfig{User: "acme", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
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
				keys[i] = fmt.Sprintf("acme:ZZ-ACMEIND:%s:4718:0001", ctl)
			}
		}(w)
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	uploaded := time.Since(start)
	deadline := time.Now().Add(5 * time.Minute)
	for len(sink.Documents()) < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	docs := sink.Documents()
	if len(docs) < n {
		return fmt.Errorf("only %d of %d documents reached the ERP in time", len(docs), n)
	}
	at := map[string]time.Time{}
	last := start
	for _, d := range docs {
		at[d.Key] = d.ReceivedAt
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
	fmt.Fprintf(out, "edigw bench e2e: %d files (one 005010 856 each, %d bytes) over %d SFTP connections, durable spool (SQLite synchronous=FULL, fsync'd blobs)\n", n, len(sample), conns)
	fmt.Fprintf(out, "  uploads done in %.2fs; last ERP POST after %.2fs\n", uploaded.Seconds(), total.Seconds())
	fmt.Fprintf(out, "  throughput: %.0f transaction sets/s (upload start to last POST)\n", float64(n)/total.Seconds())
	fmt.Fprintf(out, "  latency upload close → ERP POST: p50 %s, p99 %s, max %s\n", pct(0.50).Round(time.Millisecond), pct(0.99).Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	return nil
}
