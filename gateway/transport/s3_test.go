package transport

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/edigw/edigw/internal/testpeers"
	"github.com/edigw/edigw/partners"
)

const (
	s3TestAccess = "edigwtestkey"
	s3TestSecret = "edigwtestsecret123"
)

func s3Remote(endpoint, prefix string) partners.Remote {
	return partners.Remote{
		URL:        partners.Endpoint{Scheme: "s3", Bucket: "partner", Prefix: prefix},
		AccessKey:  partners.SecretRef{Env: "EDIGW_TEST_S3_ACCESS", Field: "access_key_env"},
		SecretKey:  partners.SecretRef{File: "secret", Field: "secret_key_file"},
		S3Endpoint: endpoint,
	}
}

// s3Keys lists the files under dir in the posix backend, as keys relative
// to it (versitygw's own metadata files excluded).
func s3Keys(t *testing.T, dir string) []string {
	t.Helper()
	var keys []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			keys = append(keys, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	sort.Strings(keys)
	return keys
}

func TestS3RoundTrip(t *testing.T) {
	dir, endpoint := testpeers.StartVersitygw(t, s3TestAccess, s3TestSecret, "partner")
	base := t.TempDir()
	if err := os.WriteFile(filepath.Join(base, "secret"), []byte(s3TestSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("EDIGW_TEST_S3_ACCESS", s3TestAccess)
	bucket := filepath.Join(dir, "partner")

	// Objects beside and below the prefix are not part of the folder.
	ctx := context.Background()
	outside := dialT(t, s3Remote(endpoint, ""), Options{BaseDir: base})
	if err := outside.Write(ctx, "top.edi", strings.NewReader("top")); err != nil {
		t.Fatalf("write outside the prefix: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(bucket, "in/deeper"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bucket, "in/deeper/x.edi"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}

	tr := dialT(t, s3Remote(endpoint, "in/"), Options{BaseDir: base, Timeout: 20 * time.Second})
	xferRoundTrip(t, tr, func(sub string) []string {
		var names []string
		for _, k := range s3Keys(t, filepath.Join(bucket, "in", sub)) {
			if !strings.Contains(k, "/") {
				names = append(names, k)
			}
		}
		return names
	})
	if got := strings.Join(s3Keys(t, bucket), ","); got != "in/deeper/x.edi,in/done/b.edi,in/done/empty.txt,top.edi" {
		t.Fatalf("bucket holds %s", got)
	}
	files, err := outside.List(ctx)
	if err != nil || len(files) != 1 || files[0].Name != "top.edi" || files[0].Size != 3 {
		t.Fatalf("list of the bucket root = %+v, %v", files, err)
	}
}

func TestS3Errors(t *testing.T) {
	_, endpoint := testpeers.StartVersitygw(t, s3TestAccess, s3TestSecret, "partner")
	base := t.TempDir()
	ctx := context.Background()
	t.Setenv("EDIGW_TEST_S3_ACCESS", s3TestAccess)

	// Wrong secret: every call is refused.
	if err := os.WriteFile(filepath.Join(base, "secret"), []byte("wrong-secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	tr := dialT(t, s3Remote(endpoint, ""), Options{BaseDir: base, Timeout: 10 * time.Second})
	if _, err := tr.List(ctx); err == nil {
		t.Error("list with a wrong secret succeeded")
	}

	// A missing secret file fails Dial; one key without the other too.
	if tr, err := Dial(ctx, s3Remote(endpoint, ""), Options{BaseDir: t.TempDir()}); err == nil {
		tr.Close()
		t.Error("dial with a missing secret file succeeded")
	}
	r := s3Remote(endpoint, "")
	r.SecretKey = partners.SecretRef{}
	if tr, err := Dial(ctx, r, Options{BaseDir: base}); err == nil {
		tr.Close()
		t.Error("dial with only an access key succeeded")
	}

	// Missing bucket and missing object.
	if err := os.WriteFile(filepath.Join(base, "secret"), []byte(s3TestSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	r = s3Remote(endpoint, "")
	r.URL.Bucket = "no-such-bucket"
	if _, err := dialT(t, r, Options{BaseDir: base}).List(ctx); err == nil {
		t.Error("list of a missing bucket succeeded")
	}
	good := dialT(t, s3Remote(endpoint, "in/"), Options{BaseDir: base})
	if _, err := good.Open(ctx, "missing.edi"); err == nil {
		t.Error("open of a missing object succeeded")
	}
	if err := good.Move(ctx, "missing.edi", "done"); err == nil {
		t.Error("move of a missing object succeeded")
	}
	if err := good.Write(ctx, "a/b", strings.NewReader("x")); err == nil {
		t.Error("write of a name with a slash succeeded")
	}
}
