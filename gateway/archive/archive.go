// Package archive stores the raw files, acknowledgements and mapped documents
// of every message under a predictable key, write-once, with a SHA-256
// checksum kept beside each object (DESIGN.md, step 6 "Archive").
//
// Two implementations satisfy [Archive]:
//
//   - [Dir], a local directory (the embedded default of `edigw serve`);
//   - [S3], any S3-API server reached with aws-sdk-go-v2 (AWS S3, versitygw,
//     MinIO, Ceph RGW, ...).
//
// Both are write-once and idempotent: putting a key again with the same
// content succeeds without change (a pipeline retry after a crash just runs
// again), putting it with different content fails with [ErrConflict].
package archive

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"
)

// Archive stores objects. Implementations are safe for concurrent use.
type Archive interface {
	// Put stores o under o.Key. Putting an existing key with identical
	// content is a no-op success; different content returns an error
	// wrapping ErrConflict. A body that does not match o.SHA256 or o.Size
	// returns an error wrapping ErrChecksum and stores nothing.
	Put(ctx context.Context, o Object) error
}

// PutAll stores objs in a, together where a can make that cheaper (a [Dir]
// makes one fsync per directory), else one by one.
func PutAll(ctx context.Context, a Archive, objs []Object) error {
	if b, ok := a.(interface {
		PutAll(context.Context, []Object) error
	}); ok {
		return b.PutAll(ctx, objs)
	}
	for _, o := range objs {
		if err := a.Put(ctx, o); err != nil {
			return err
		}
	}
	return nil
}

// Object is one file to archive.
type Object struct {
	// Key is a slash-separated relative key, usually built with [Key].
	Key string
	// Body is read once, to EOF. It is required even with LinkFrom (Dir
	// falls back to copying it when the link cannot be made), but is then
	// not read when the link succeeds.
	Body io.Reader
	// Size is the body length in bytes, or -1 when unknown. When >= 0 the
	// body must have exactly this length.
	Size int64
	// SHA256 is the lowercase or uppercase hex SHA-256 of the body, or ""
	// to have the archive compute it. It is stored as object metadata
	// "sha256" (S3) or as a line of the SHA256SUMS manifest in the object's
	// directory (Dir). When given, the body is verified against it, except
	// when Dir hard-links LinkFrom: then it is trusted as is.
	SHA256 string
	// LinkFrom is optional: the path of a local file that holds exactly the
	// body, is already durable (fsynced) and is never modified afterwards,
	// such as a spool blob (read-only 0444 and content-addressed). [Dir]
	// hard-links it under the key's name instead of copying Body: no new
	// inode, no data copy and no file fsync, only the directory is fsynced.
	// The archived file then shares the source's inode, hence its mode and
	// owner. SHA256 is required with LinkFrom and is trusted as the
	// content's hash without reading the file (for a spool blob it is the
	// blob's content address); Dir only checks the file's size against Size
	// when Size >= 0. When the link cannot be made (another file system,
	// no hard links, link limit, ...) Dir copies Body instead. Other
	// archives (S3) ignore LinkFrom.
	LinkFrom string
	// ContentType is the MIME type (S3 Content-Type); optional.
	ContentType string
	// Metadata is extra user metadata (S3 x-amz-meta-*); keys should be
	// lowercase. The key "sha256" is reserved and always overwritten.
	Metadata map[string]string
}

// MetaSHA256 is the object metadata key holding the hex SHA-256 of the body.
const MetaSHA256 = "sha256"

// SidecarSuffix is appended to an object's file name to name its checksum
// sidecar, as written by earlier versions of [Dir]; Dir still reads such
// sidecars but now keeps checksums in [ManifestName]. [Key] never produces
// a name ending in it, so a legacy sidecar cannot clash with an object.
const SidecarSuffix = ".sha256"

// ManifestName is the file in each directory of a [Dir] archive that lists
// the hex SHA-256 of the objects beside it, in sha256sum(1) format. [Key]
// never produces it as an object name.
const ManifestName = "SHA256SUMS"

var (
	// ErrConflict: the key already holds different content (archives are
	// write-once).
	ErrConflict = errors.New("archive: key already exists with different content")
	// ErrChecksum: the body does not match Object.SHA256 or Object.Size.
	ErrChecksum = errors.New("archive: body does not match its declared sha256/size")
	// ErrNotFound: no object under that key (Stat, Open).
	ErrNotFound = errors.New("archive: no such key")
	// ErrInvalidKey: the key is empty, absolute, or has empty, "." or ".."
	// segments, or segments starting with "." (reserved for temp files).
	ErrInvalidKey = errors.New("archive: invalid key")
)

// maxSegment bounds one key segment in bytes (file systems allow 255 per name;
// we leave room for the ".sha256" sidecar suffix and temp names).
const maxSegment = 200

// Key builds the archive key
//
//	<prefix>/<partner>/<yyyy>/<mm>/<dd>/<message-id>/<name>
//
// with the date taken in UTC. prefix is optional and may hold several
// slash-separated segments; empty segments are dropped. Every segment is
// sanitised: bytes outside [A-Za-z0-9._-] become "_", a leading "." becomes
// "_" (so "..", hidden files and temp names cannot occur), an empty segment
// becomes "_", a name ending in ".sha256" ends in "_sha256" instead, a name
// equal to "SHA256SUMS" becomes "SHA256SUMS_" (both are reserved for
// checksum files of [Dir]), and a segment longer than 200 bytes is cut and
// suffixed with a short hash of the original (keeping the extension) so
// distinct long names stay distinct.
func Key(prefix, partner string, at time.Time, messageID, name string) string {
	var segs []string
	for _, p := range strings.Split(prefix, "/") {
		if p != "" {
			segs = append(segs, sanitize(p))
		}
	}
	at = at.UTC()
	segs = append(segs,
		sanitize(partner),
		fmt.Sprintf("%04d", at.Year()),
		fmt.Sprintf("%02d", int(at.Month())),
		fmt.Sprintf("%02d", at.Day()),
		sanitize(messageID),
		sanitizeName(name),
	)
	return strings.Join(segs, "/")
}

func sanitizeName(name string) string {
	s := sanitize(name)
	if strings.HasSuffix(s, SidecarSuffix) {
		s = strings.TrimSuffix(s, SidecarSuffix) + "_" + SidecarSuffix[1:]
	}
	if s == ManifestName {
		s += "_"
	}
	return s
}

func sanitize(s string) string {
	if s == "" {
		return "_"
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '-', c == '_', c == '.':
			b = append(b, c)
		default:
			b = append(b, '_')
		}
	}
	if b[0] == '.' {
		b[0] = '_'
	}
	out := string(b)
	if len(out) > maxSegment {
		sum := sha256.Sum256([]byte(s))
		tag := "~" + hex.EncodeToString(sum[:4])
		ext := path.Ext(out)
		if len(ext) > 16 {
			ext = ""
		}
		out = out[:maxSegment-len(tag)-len(ext)] + tag + ext
	}
	return out
}

// ValidKey reports whether key is acceptable to Put: relative, slash
// separated, with no empty, ".", ".." or dot-leading segments, no
// backslashes or NUL bytes, and at most 1024 bytes. Keys built with [Key]
// are always valid.
func ValidKey(key string) error {
	if key == "" || len(key) > 1024 {
		return fmt.Errorf("%w: %q: empty or longer than 1024 bytes", ErrInvalidKey, key)
	}
	if strings.ContainsAny(key, "\\\x00") {
		return fmt.Errorf("%w: %q: contains a backslash or NUL", ErrInvalidKey, key)
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg[0] == '.' {
			return fmt.Errorf("%w: %q: empty or dot-leading segment", ErrInvalidKey, key)
		}
		if len(seg) > 255-len(SidecarSuffix)-1 {
			return fmt.Errorf("%w: %q: segment longer than %d bytes", ErrInvalidKey, key, 255-len(SidecarSuffix)-1)
		}
	}
	return nil
}

// normSHA256 validates and lowercases a hex SHA-256 ("" stays "").
func normSHA256(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	s = strings.ToLower(s)
	if len(s) != sha256.Size*2 {
		return "", fmt.Errorf("archive: sha256 %q: want %d hex digits", s, sha256.Size*2)
	}
	if _, err := hex.DecodeString(s); err != nil {
		return "", fmt.Errorf("archive: sha256 %q: %w", s, err)
	}
	return s, nil
}

// verify compares what was read with what the caller declared.
func verify(o Object, wantSHA, gotSHA string, gotSize int64) error {
	if o.Size >= 0 && gotSize != o.Size {
		return fmt.Errorf("%w: key %s: read %d bytes, declared size %d", ErrChecksum, o.Key, gotSize, o.Size)
	}
	if wantSHA != "" && gotSHA != wantSHA {
		return fmt.Errorf("%w: key %s: body sha256 %s, declared %s", ErrChecksum, o.Key, gotSHA, wantSHA)
	}
	return nil
}
