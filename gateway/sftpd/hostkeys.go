package sftpd

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
)

// Host key files in Config.HostKeyDir, named like OpenSSH's.
const (
	hostKeyEd25519 = "ssh_host_ed25519_key"
	hostKeyRSA     = "ssh_host_rsa_key"
	rsaHostKeyBits = 3072
)

// loadHostKeys loads the ed25519 and RSA host keys from dir, generating
// each one that does not exist yet (0600, with a .pub beside it). The RSA
// key signs with rsa-sha2-512 or rsa-sha2-256 only, never SHA-1 ssh-rsa.
func loadHostKeys(dir string) ([]ssh.Signer, error) {
	if dir == "" {
		return nil, errors.New("sftpd: HostKeyDir is required")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sftpd: host keys: %w", err)
	}
	ed, err := loadOrCreate(filepath.Join(dir, hostKeyEd25519), func() (any, error) {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	})
	if err != nil {
		return nil, err
	}
	rs, err := loadOrCreate(filepath.Join(dir, hostKeyRSA), func() (any, error) {
		return rsa.GenerateKey(rand.Reader, rsaHostKeyBits)
	})
	if err != nil {
		return nil, err
	}
	if rs.PublicKey().Type() != ssh.KeyAlgoRSA || ed.PublicKey().Type() != ssh.KeyAlgoED25519 {
		return nil, fmt.Errorf("sftpd: host keys in %s are not of the expected types (ed25519 in %s, RSA in %s)", dir, hostKeyEd25519, hostKeyRSA)
	}
	as, ok := rs.(ssh.AlgorithmSigner)
	if !ok {
		return nil, errors.New("sftpd: RSA host key cannot choose its signature algorithm")
	}
	rsa2, err := ssh.NewSignerWithAlgorithms(as, []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256})
	if err != nil {
		return nil, fmt.Errorf("sftpd: RSA host key: %w", err)
	}
	return []ssh.Signer{ed, rsa2}, nil
}

func loadOrCreate(file string, generate func() (any, error)) (ssh.Signer, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		data, err = createKey(file, generate)
	}
	if err != nil {
		return nil, fmt.Errorf("sftpd: host key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("sftpd: host key %s: %w", file, err)
	}
	return signer, nil
}

// createKey writes a new private key to file without ever replacing one: if
// another process created it meanwhile, that key is returned instead.
func createKey(file string, generate func() (any, error)) ([]byte, error) {
	key, err := generate()
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(key, "edigw host key")
	if err != nil {
		return nil, err
	}
	data := pem.EncodeToMemory(block)
	dir := filepath.Dir(file)
	tmp, err := os.CreateTemp(dir, ".hostkey-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	if err := os.Link(tmp.Name(), file); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return os.ReadFile(file)
		}
		return nil, err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	signer, err := ssh.ParsePrivateKey(data)
	if err != nil {
		return nil, err
	}
	// The public half, for partners to pin; best effort.
	_ = os.WriteFile(file+".pub", ssh.MarshalAuthorizedKey(signer.PublicKey()), 0o644)
	return data, nil
}
