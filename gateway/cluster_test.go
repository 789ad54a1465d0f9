package gateway_test

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/edigw/edigw/gateway/erpsink"
	"github.com/edigw/edigw/internal/testpeers"
)

// clusterNode is one `edigw serve` process of the cluster test.
type clusterNode struct {
	name               string
	config, log        string
	sftpPort, httpPort int
	cmd                *exec.Cmd
	starts             int // times it said it listens (the log is appended across restarts)
}

func (n *clusterNode) start(t *testing.T) {
	t.Helper()
	n.cmd = exec.Command(edigwBin, "serve", "--config", n.config)
	f, _ := os.OpenFile(n.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	n.cmd.Stdout, n.cmd.Stderr = f, f
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd := n.cmd
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	listening := fmt.Sprintf(`"msg":"SFTP listening","addr":"127.0.0.1:%d"`, n.sftpPort)
	for i := 0; i < 200; i++ {
		// Its own log says it listens (a bare TCP connect could reach another process).
		if b, _ := os.ReadFile(n.log); bytes.Contains(b, []byte(listening)) && strings.Count(string(b), listening) > n.starts {
			n.starts++
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, _ := os.ReadFile(n.log)
	t.Fatalf("%s did not listen:\n%s", n.name, tail(string(b), 30))
}

// Three gateway nodes on one PostgreSQL and one S3-API server behave as one
// gateway: 2,000 files uploaded with the OpenSSH client across the three
// SFTP ports while a poll runs against a real sshd; one node SIGKILLed in the
// middle and restarted later. Every document reaches the ERP (counted by
// Idempotency-Key), every ack is produced once, and each schedule tick ran
// on exactly one node.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("the cluster test takes a few minutes")
	}
	need(t, "sftp")
	need(t, "ssh-keygen")
	const nFiles, nPolled = 2000, 100
	dir := t.TempDir()
	ctx := context.Background()

	// One PostgreSQL schema for the spool, dropped at the end.
	dsn := cmp.Or(os.Getenv("EDIGW_TEST_POSTGRES"), "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		testpeers.Unavailable(t, "PostgreSQL at %s: %v", dsn, err)
	}
	defer db.Close(ctx)
	schema := fmt.Sprintf("cluster_test_%d", time.Now().UnixNano())
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), dsn)
		if err == nil {
			c.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
			c.Close(context.Background())
		}
	})
	t.Setenv("EDIGW_TEST_SPOOL_DSN", dsn)

	// One S3-API server for the payloads and the archive.
	_, s3endpoint := testpeers.StartVersitygw(t, s3Access, s3Secret, "spool", "archive")
	t.Setenv("EDIGW_TEST_S3_ACCESS", s3Access)
	t.Setenv("EDIGW_TEST_S3_SECRET", s3Secret)
	for name, tok := range map[string]string{"EDIGW_TEST_TOKEN_OPS": testTokens["ops"], "EDIGW_TEST_TOKEN_VIEWER": testTokens["watcher"], "EDIGW_TEST_TOKEN_ADMIN": testTokens["boss"]} {
		t.Setenv(name, tok)
	}

	// A partner server the retail partner's poll collects from.
	peer := testpeers.StartSSHD(t)
	folder := filepath.Join(peer.Dir, "out")
	os.MkdirAll(folder, 0o755)

	// The retail partner uploads 850s over SFTP and is polled every second.
	key := filepath.Join(dir, "key")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatal(string(out))
	}
	pub, _ := os.ReadFile(key + ".pub")
	parts := filepath.Join(dir, "partners")
	writeRetail(t, filepath.Join(parts, "retail"), string(pub))
	py := filepath.Join(parts, "retail", "partner.yaml")
	b, _ := os.ReadFile(py)
	b = bytes.Replace(b, []byte("outbound: {channel: outbox}"), fmt.Appendf(nil, `  polls:
    - name: supplier-sftp
      url: sftp://%s@127.0.0.1:%d%s
      private_key_file: %s
      host_key: %q
      schedule: "* * * * * *"
      stable_for: 0s
      max_files: 20
      after_fetch: delete
outbound: {channel: outbox}`, peer.User, peer.Port, folder, filepath.Join(peer.Dir, "client"), peer.FP), 1)
	os.WriteFile(py, b, 0o644)

	sink, _ := erpsink.NewSink("")
	sinkLn, _ := net.Listen("tcp", "127.0.0.1:0")
	sinkSrv := &http.Server{Handler: sink}
	go sinkSrv.Serve(sinkLn)
	defer sinkSrv.Close()

	// The documents: ISA13 1..nFiles uploaded, then polled ones.
	po, _ := os.ReadFile("../mapping/testdata/po-in.edi")
	doc := func(n int) []byte { return bytes.ReplaceAll(po, []byte("000000101"), fmt.Appendf(nil, "%09d", n)) }
	up := filepath.Join(dir, "upload")
	os.MkdirAll(up, 0o755)
	for i := 1; i <= nFiles; i++ {
		os.WriteFile(filepath.Join(up, fmt.Sprintf("po%04d.edi", i)), doc(i), 0o644)
	}
	for i := 1; i <= nPolled; i++ {
		os.WriteFile(filepath.Join(folder, fmt.Sprintf("polled%03d.edi", i)), doc(100000+i), 0o644)
	}

	// Three nodes: own SFTP and HTTP ports and working folders; shared host
	// keys, outbox (the partner collects from any node), spool and blobs.
	outbox := filepath.Join(dir, "outbox")
	var nodes []*clusterNode
	ports := testpeers.Ports(t, 6) // six ports free at once: no node can get another's
	for i := range 3 {
		n := &clusterNode{name: fmt.Sprintf("node%d", i+1), sftpPort: ports + 2*i, httpPort: ports + 2*i + 1}
		n.config = filepath.Join(dir, n.name+".yaml")
		n.log = filepath.Join(dir, n.name+".log")
		s3 := fmt.Sprintf(`{region: us-east-1, endpoint: %q, path_style: true, access_key_env: EDIGW_TEST_S3_ACCESS, secret_key_env: EDIGW_TEST_S3_SECRET`, s3endpoint)
		os.WriteFile(n.config, fmt.Appendf(nil, `data_dir: %s
partners: %s
partners_reload: -1s
sftp: {listen: "127.0.0.1:%d", host_key_dir: %s}
http: {listen: "127.0.0.1:%d", tokens: [{name: ops, role: operator, token_env: EDIGW_TEST_TOKEN_OPS}, {name: watcher, role: viewer, token_env: EDIGW_TEST_TOKEN_VIEWER}]}
spool: {driver: postgres, dsn_env: EDIGW_TEST_SPOOL_DSN, schema: %s}
blobs: {kind: s3, s3: %s, bucket: spool}}
outbox: {dir: %s}
archive: {kind: s3, s3: %s, bucket: archive, prefix: edi}}
erp:
  endpoints:
    - {name: purchase-orders, url: "http://%s/purchase-orders", max_concurrency: 8}
    - {name: inventory, url: "http://%s/inventory"}
schedules: {lease: 10s}
workers: {files: 2, documents: 4, poll: 100ms, lease: 20s}
`, filepath.Join(dir, n.name), parts, n.sftpPort, filepath.Join(dir, "hostkeys"), n.httpPort, schema, s3, outbox, s3, sinkLn.Addr(), sinkLn.Addr()), 0o644)
		nodes = append(nodes, n)
	}
	for _, n := range nodes { // the first creates the schema and the host keys; the others find them
		n.start(t)
	}

	// Upload in batches of 40 over three OpenSSH clients, one per node; a
	// batch that fails (its node died) is sent again to the next node: what
	// had already arrived is a duplicate there, recorded and not processed.
	var uploaded atomic.Int64
	var mu sync.Mutex
	var dead = map[int]bool{}
	upload := func(port int, names []string) error {
		var batch strings.Builder
		batch.WriteString("cd inbox\n")
		for _, n := range names {
			fmt.Fprintf(&batch, "put %s\n", filepath.Join(up, n))
		}
		bf, _ := os.CreateTemp(dir, "batch")
		bf.WriteString(batch.String())
		bf.Close()
		out, err := exec.Command("sftp", "-b", bf.Name(), "-i", key, "-P", fmt.Sprint(port), "-o", "StrictHostKeyChecking=no",
			"-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5",
			"retail@127.0.0.1").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, tail(string(out), 3))
		}
		return nil
	}
	var files []string
	for i := 1; i <= nFiles; i++ {
		files = append(files, fmt.Sprintf("po%04d.edi", i))
	}
	batches := make(chan []string, nFiles/40+1)
	for i := 0; i < len(files); i += 40 {
		batches <- files[i:min(i+40, len(files))]
	}
	close(batches)
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for batch := range batches {
				for try := 0; ; try++ {
					i := (w + try) % 3
					mu.Lock()
					skip := dead[i]
					mu.Unlock()
					if skip {
						continue
					}
					if err := upload(nodes[i].sftpPort, batch); err != nil {
						t.Logf("batch of %s to %s failed, sending it to the next node: %v", batch[0], nodes[i].name, err)
						if try > 10 {
							t.Errorf("batch of %s: giving up: %v", batch[0], err)
							break
						}
						continue
					}
					uploaded.Add(int64(len(batch)))
					break
				}
			}
		}()
	}

	// SIGKILL node 2 once a third of the files are in; restart it after the uploads.
	victim := nodes[1]
	for uploaded.Load() < nFiles/3 {
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	dead[1] = true
	mu.Unlock()
	victim.cmd.Process.Signal(syscall.SIGKILL)
	victim.cmd.Wait()
	t.Logf("SIGKILLed %s after %d files", victim.name, uploaded.Load())
	wg.Wait()
	victim.start(t)
	t.Logf("restarted %s", victim.name)

	// Everything reaches the ERP.
	deadline := time.Now().Add(5 * time.Minute)
	for len(sink.Documents()) < nFiles+nPolled && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
	}
	docs := sink.Documents()
	seen := map[string]int{}
	for _, d := range docs {
		seen[d.Key]++
	}
	var missing []int
	for _, n := range append(seq(1, nFiles), seq(100001, 100000+nPolled)...) {
		k := fmt.Sprintf("retail:ZZ-SUPPLIERX:%09d:101:0001", n)
		if seen[k] != 1 {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 || len(seen) != nFiles+nPolled {
		logs := ""
		for _, n := range nodes {
			b, _ := os.ReadFile(n.log)
			logs += "\n--- " + n.name + "\n" + tail(string(b), 15)
		}
		t.Fatalf("the ERP has %d distinct documents, want %d; missing ISA13s (first 20): %v%s", len(seen), nFiles+nPolled, missing[:min(20, len(missing))], logs)
	}
	if replays := totalPosts(sink) - len(seen); replays > 0 {
		// A POST the killed node had sent but not recorded is sent again by the
		// node that takes it over, with the same key: the ERP recognises it.
		t.Logf("%d POSTs repeated an Idempotency-Key (in flight on the killed node)", replays)
		if replays > 16 {
			t.Errorf("%d repeated POSTs: more than the killed node could have had in flight", replays)
		}
	}
	if _, err := os.Stat(folder); err == nil {
		if left := names(folder); len(left) != 0 {
			t.Errorf("files left on the partner's server: %v", left)
		}
	}

	// Every ack produced once: one 997 per interchange in the shared outbox.
	acks, _ := filepath.Glob(filepath.Join(outbox, "retail", "997_*.x12"))
	if len(acks) != nFiles+nPolled {
		t.Errorf("%d acks in the outbox, want %d (one per interchange)", len(acks), nFiles+nPolled)
	}
	var dupAcks int
	if err := db.QueryRow(ctx, "SELECT count(*) FROM "+schema+".interchanges WHERE state = 'parsed' AND ack_kind <> '997'").Scan(&dupAcks); err != nil {
		t.Errorf("query interchanges: %v", err)
	} else if dupAcks != 0 {
		t.Errorf("%d interchanges without their 997", dupAcks)
	}

	// Each tick ran once, on one node, and runs never overlapped.
	rows, err := db.Query(ctx, "SELECT owner, status, started_at, COALESCE(ended_at, lease_until), tick FROM "+schema+
		".poll_runs WHERE partner = 'retail' AND poll = 'supplier-sftp' AND tick IS NOT NULL ORDER BY started_at")
	if err != nil {
		t.Fatal(err)
	}
	ticks := map[time.Time]int{}
	owners := map[string]int{}
	var prevEnd time.Time
	var nRuns int
	for rows.Next() {
		var owner, status string
		var start, end, tick time.Time
		if err := rows.Scan(&owner, &status, &start, &end, &tick); err != nil {
			t.Fatal(err)
		}
		nRuns++
		ticks[tick]++
		owners[owner]++
		if start.Before(prevEnd) && status != "abandoned" {
			t.Errorf("a run by %s started at %s before the previous one ended at %s", owner, start, prevEnd)
		}
		prevEnd = end
	}
	rows.Close()
	for tick, n := range ticks {
		if n != 1 {
			t.Errorf("tick %s ran %d times", tick, n)
		}
	}
	if nRuns < 5 {
		t.Errorf("only %d scheduled poll runs", nRuns)
	}
	t.Logf("%d poll ticks, run by %v", nRuns, owners)

	// Any node shows the whole cluster: three nodes alive, the killed process not.
	var view []struct {
		ID    string
		Alive bool
	}
	e := &env{t: t, httpPort: nodes[0].httpPort}
	e.get("/api/v1/nodes", "watcher", &view)
	alive := 0
	for _, n := range view {
		if n.Alive {
			alive++
		}
	}
	if alive != 3 || len(view) != 4 {
		t.Errorf("nodes: %+v, want 3 alive and the killed one not", view)
	}
}

func seq(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}
