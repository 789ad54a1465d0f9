package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/edigw/edigw/gateway"
	"github.com/edigw/edigw/schedules"
	"github.com/edigw/edigw/spool"
)

// benchPollCmd measures one poll of a remote SFTP folder holding many small
// files against the OpenSSH client fetching the same files, both from a real
// OpenSSH sshd on loopback (scripts/sshd-peer.sh).
func benchPollCmd() *cobra.Command {
	var n, size int
	var partnersDir, scripts string
	c := &cobra.Command{
		Use:   "poll",
		Short: "Poll benchmark: one poll of N small files from sshd vs `sftp -b` (files/s)",
		Long: `Start an OpenSSH sshd on loopback with N small files in a folder, then fetch
them all three ways and print files/s with the ratio to OpenSSH:
  openssh   sftp -b with "get *" into a local folder (no fsync): the reference
  keep      one edigw poll run, after_fetch keep: every file durable in the
            spool (blob fsync'd, record committed) before it counts
  delete    one edigw poll run, after_fetch delete: the same, plus the remote
            delete after durability (what a production poll does)
Run it from the repository root (it uses scripts/sshd-peer.sh and the acme
example partner).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return benchPoll(cmd.Context(), cmd.OutOrStdout(), partnersDir, scripts, n, size)
		},
	}
	c.Flags().IntVar(&n, "files", 10000, "files in the remote folder")
	c.Flags().IntVar(&size, "size", 600, "bytes per file")
	c.Flags().StringVar(&partnersDir, "partners", "deploy/examples/partners", "partner profiles (acme is copied and given the poll)")
	c.Flags().StringVar(&scripts, "scripts", "scripts", "the repository's scripts folder")
	return c
}

func benchPoll(ctx context.Context, out io.Writer, partnersDir, scripts string, n, size int) error {
	dir, err := os.MkdirTemp("", "edigw-bench-poll")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	peer := filepath.Join(dir, "sshd")
	port, err := freeLoopbackPort()
	if err != nil {
		return err
	}
	script, _ := filepath.Abs(filepath.Join(scripts, "sshd-peer.sh"))
	started, err := exec.CommandContext(ctx, "bash", script, "start", peer, strconv.Itoa(port)).Output()
	if err != nil {
		return fmt.Errorf("start sshd (%s): %w", script, err)
	}
	defer exec.Command("bash", script, "stop", peer).Run()
	fp := strings.Fields(string(started))
	if len(fp) < 2 {
		return fmt.Errorf("sshd-peer.sh printed %q, want a fingerprint", started)
	}
	user := os.Getenv("USER")
	if user == "" {
		user = "root"
	}
	if out, err := exec.Command("id", "-un").Output(); err == nil {
		user = strings.TrimSpace(string(out))
	}
	remote := filepath.Join(peer, "out")
	if err := makeFiles(remote, n, size); err != nil {
		return err
	}
	fmt.Fprintf(out, "one poll of %d files of %d bytes from OpenSSH sshd on loopback (%s)\n", n, size, remote)

	// The reference: OpenSSH's client, one session, "get *".
	local := filepath.Join(dir, "openssh")
	os.MkdirAll(local, 0o755)
	batch := filepath.Join(dir, "batch")
	os.WriteFile(batch, []byte("lcd "+local+"\ncd "+remote+"\nget *\n"), 0o644)
	start := time.Now()
	sftpOut, err := exec.CommandContext(ctx, "sftp", "-q", "-b", batch, "-i", filepath.Join(peer, "client"), "-P", strconv.Itoa(port),
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", user+"@127.0.0.1").CombinedOutput()
	ref := time.Since(start)
	if err != nil {
		return fmt.Errorf("sftp -b: %v\n%s", err, sftpOut)
	}
	if got, _ := os.ReadDir(local); len(got) != n {
		return fmt.Errorf("sftp -b fetched %d files, want %d", len(got), n)
	}
	refRate := float64(n) / ref.Seconds()
	fmt.Fprintf(out, "  %-44s %8.0f files/s  %6.2fs  1.00x\n", "openssh sftp -b (get *, no fsync)", refRate, ref.Seconds())

	for _, after := range []string{"keep", "delete"} {
		took, err := benchPollRun(ctx, dir, partnersDir, peer, remote, user, port, fp[1], after, n)
		if err != nil {
			return fmt.Errorf("edigw poll (%s): %w", after, err)
		}
		rate := float64(n) / took.Seconds()
		fmt.Fprintf(out, "  %-44s %8.0f files/s  %6.2fs  %.2fx\n", "edigw poll, after_fetch "+after+" (durable spool)", rate, took.Seconds(), rate/refRate)
	}
	return nil
}

// benchPollRun runs one poll with a fresh spool and returns how long it took.
func benchPollRun(ctx context.Context, dir, partnersDir, peer, remote, user string, port int, fingerprint, after string, n int) (time.Duration, error) {
	run := filepath.Join(dir, "run-"+after)
	parts := filepath.Join(run, "partners")
	if err := os.MkdirAll(parts, 0o755); err != nil {
		return 0, err
	}
	if out, err := exec.Command("cp", "-r", filepath.Join(partnersDir, "acme"), filepath.Join(parts, "acme")).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("copy acme: %v: %s", err, out)
	}
	py := filepath.Join(parts, "acme", "partner.yaml")
	b, err := os.ReadFile(py)
	if err != nil {
		return 0, err
	}
	poll := fmt.Sprintf(`inbound:
  polls:
    - name: bench
      url: sftp://%s@127.0.0.1:%d%s
      private_key_file: %s
      host_key: %q
      schedule: "@every 1h"
      stable_for: 0s
      max_files: %d
      after_fetch: %s
`, user, port, remote, filepath.Join(peer, "client"), fingerprint, n, after)
	b = bytes.Replace(b, []byte("inbound:\n"), []byte(poll), 1)
	if err := os.WriteFile(py, b, 0o644); err != nil {
		return 0, err
	}
	cfg, _ := gateway.LoadConfig("")
	cfg.DataDir, cfg.Partners = filepath.Join(run, "data"), parts
	cfg.Spool.Path, cfg.Blobs.Dir = filepath.Join(run, "data", "spool.db"), filepath.Join(run, "data", "blobs")
	g, err := gateway.OpenPolls(ctx, cfg, slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	if err != nil {
		return 0, err
	}
	defer g.Store().Close()
	var p *schedules.Poll
	for _, q := range gateway.Polls(g.Partners()) {
		if q.Name == "bench" {
			p = &q
		}
	}
	if p == nil {
		return 0, fmt.Errorf("the bench poll did not load")
	}
	start := time.Now()
	r, err := g.Runner().Run(ctx, p, "bench")
	took := time.Since(start)
	if err != nil {
		return 0, err
	}
	if r.Fetched != n || r.Status != spool.RunOK {
		return 0, fmt.Errorf("run %+v: fetched %d of %d", r, r.Fetched, n)
	}
	return took, nil
}

// makeFiles writes n distinct files of size bytes into dir.
func makeFiles(dir string, n, size int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i := range n {
		line := fmt.Sprintf("BENCH*%09d~", i)
		b := bytes.Repeat([]byte(line), size/len(line)+1)[:size]
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%06d.edi", i)), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
