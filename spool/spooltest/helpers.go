package spooltest

import (
	"io"
	"strings"
	"testing"

	"github.com/edigw/edigw/spool"
)

func stringsReader(s string) io.Reader { return strings.NewReader(s) }

func readAll(t *testing.T, b spool.Blobs, r spool.BlobRef) string {
	t.Helper()
	rc, err := b.Open(t.Context(), r)
	if err != nil {
		t.Fatalf("Open %v: %v", r, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %v: %v", r, err)
	}
	return string(data)
}

// failingReader yields data, then fails with err instead of io.EOF: a
// connection that drops mid-upload.
type failingReader struct {
	data string
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.data == "" {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}
