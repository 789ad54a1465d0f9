package gateway

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The documented example is the defaults, written out.
func TestExampleConfigIsTheDefaults(t *testing.T) {
	ex, err := LoadConfig("../deploy/examples/gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	def, _ := LoadConfig("")
	def.ERP.Sink.Enabled = false // only the no-config default turns the sink on
	if *ex.Spool.WriterNice != *def.Spool.WriterNice || *def.Spool.WriterNice != -10 {
		t.Errorf("spool.writer_nice: example %d, default %d, want -10", *ex.Spool.WriterNice, *def.Spool.WriterNice)
	}
	ex.Spool.WriterNice, def.Spool.WriterNice = nil, nil // compared above
	if ex.SFTP != def.SFTP || ex.Spool != def.Spool || ex.Blobs != def.Blobs || ex.Archive.Dir != def.Archive.Dir || ex.Workers != def.Workers ||
		ex.ERP.Sink != def.ERP.Sink || ex.Partners != def.Partners || ex.OurISA != def.OurISA ||
		ex.PartnersReload != def.PartnersReload || *ex.Schedules.Enabled != *def.Schedules.Enabled || ex.Schedules.Lease != def.Schedules.Lease ||
		ex.HTTP.Listen != def.HTTP.Listen || len(ex.HTTP.Tokens) != 0 {
		t.Errorf("example and defaults differ:\n%+v\n%+v", ex, def)
	}
	if ex.Workers.Lease != 2*time.Minute || ex.SFTP.MaxFileSize != 256<<20 {
		t.Errorf("unexpected values %+v", ex)
	}
}

func TestConfigUnknownKey(t *testing.T) {
	p := filepath.Join(t.TempDir(), "g.yaml")
	os.WriteFile(p, []byte("sftp:\n  listen: \":2022\"\n  lisen: x\n"), 0o644)
	_, err := LoadConfig(p)
	if err == nil || !strings.Contains(err.Error(), "lisen") || !strings.Contains(err.Error(), "g.yaml") {
		t.Errorf("err = %v", err)
	}
}

func TestConfigNodeTimeoutTooShort(t *testing.T) {
	p := filepath.Join(t.TempDir(), "g.yaml")
	os.WriteFile(p, []byte("workers:\n  node_timeout: 200ms\n"), 0o644)
	_, err := LoadConfig(p)
	if err == nil || !strings.Contains(err.Error(), "workers.node_timeout is 200ms") {
		t.Errorf("err = %v", err)
	}
	os.WriteFile(p, []byte("workers:\n  node_timeout: 2s\n"), 0o644)
	if c, err := LoadConfig(p); err != nil || c.Workers.NodeTimeout != 2*time.Second {
		t.Errorf("2s: %v %v", c, err)
	}
}
