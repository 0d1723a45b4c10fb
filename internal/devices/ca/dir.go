package ca

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// The names of the CA's files in the folder of LoadOrCreateDir.
const (
	// CertFile holds the CA's certificate (PEM), readable by all (0644).
	CertFile = "device-ca.pem"
	// KeyFile holds the CA's private key (PEM), readable by its owner
	// only (0600).
	KeyFile = "device-ca-key.pem"
)

// LoadOrCreateDir returns the CA kept in dir as CertFile and KeyFile.
// If neither file exists it makes a new CA (New with DefaultName and now),
// creating dir (0700) if needed, and writes both files, each atomically
// (a temporary file in dir, synced, then renamed), the key with mode
// 0600. If both exist it loads them; it does not check the CA's validity
// period (see CA.Certificate): IssueClient, SignCSR and ServerCert do.
//
// It never replaces what it finds: it returns an error wrapping
// ErrIncompletePair if only one of the files exists (e.g. after a crash
// between the two renames: remove the one left to start afresh, which
// makes every issued certificate worthless), the errors of Parse
// (ErrInvalidCA, ErrKeyMismatch) if they do not hold a CA and its key,
// and the I/O error of reading or writing them, each naming the file.
func LoadOrCreateDir(dir string, now time.Time) (*CA, error) {
	certPath := filepath.Join(dir, CertFile)
	keyPath := filepath.Join(dir, KeyFile)
	haveCert, err := exists(certPath)
	if err != nil {
		return nil, fmt.Errorf("device CA: %w", err)
	}
	haveKey, err := exists(keyPath)
	if err != nil {
		return nil, fmt.Errorf("device CA: %w", err)
	}
	switch {
	case haveCert && haveKey:
		return loadDir(certPath, keyPath)
	case haveCert:
		return nil, fmt.Errorf("device CA in %s: %w: %s is missing", dir, ErrIncompletePair, KeyFile)
	case haveKey:
		return nil, fmt.Errorf("device CA in %s: %w: %s is missing", dir, ErrIncompletePair, CertFile)
	}
	c, err := New(now, DefaultName)
	if err != nil {
		return nil, err
	}
	certPEM, keyPEM, err := c.PEM()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("device CA: %w", err)
	}
	// Both files are written aside first so that a failure leaves neither
	// behind; only a crash between the two renames leaves a half pair.
	keyTmp, err := writeTemp(dir, KeyFile, keyPEM, 0o600)
	if err != nil {
		return nil, fmt.Errorf("device CA: %w", err)
	}
	defer os.Remove(keyTmp)
	certTmp, err := writeTemp(dir, CertFile, certPEM, 0o644)
	if err != nil {
		return nil, fmt.Errorf("device CA: %w", err)
	}
	defer os.Remove(certTmp)
	if err := os.Rename(keyTmp, keyPath); err != nil {
		return nil, fmt.Errorf("device CA: %w", err)
	}
	if err := os.Rename(certTmp, certPath); err != nil {
		// The key just placed is of no use without its certificate; take
		// it back so that the next start does not meet a half pair.
		if rerr := os.Remove(keyPath); rerr != nil {
			return nil, fmt.Errorf("device CA: %w (and removing %s: %w)", err, KeyFile, rerr)
		}
		return nil, fmt.Errorf("device CA: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return nil, fmt.Errorf("device CA: %w", err)
	}
	return c, nil
}

// loadDir reads and parses the CA's two files.
func loadDir(certPath, keyPath string) (*CA, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("device CA: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("device CA: %w", err)
	}
	c, err := Parse(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("device CA from %s and %s: %w", certPath, keyPath, err)
	}
	return c, nil
}

// exists reports whether something is at path; an error other than its
// absence is returned.
func exists(path string) (bool, error) {
	_, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// writeTemp writes data with mode to a new temporary file in dir, synced
// to disk, and returns its path.
func writeTemp(dir, name string, data []byte, mode os.FileMode) (string, error) {
	f, err := os.CreateTemp(dir, "."+name+"-*.tmp")
	if err != nil {
		return "", err
	}
	err = f.Chmod(mode)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	return f.Name(), nil
}

// syncDir makes the renames in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
