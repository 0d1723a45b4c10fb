package app

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// NewUUID returns a random (version 4) UUID.
func NewUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// NameUUID returns the UUID (version 8, RFC 9562's custom layout) named
// by name: the first 16 bytes of its SHA-256, so the same name always
// gives the same UUID (a device's press gives one ring however often it
// is reported).
func NameUUID(name string) string {
	sum := sha256.Sum256([]byte(name))
	b := sum[:16]
	b[6] = (b[6] & 0x0f) | 0x80
	b[8] = (b[8] & 0x3f) | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// RandomAlnum returns n characters drawn uniformly from [A-Za-z0-9].
func RandomAlnum(n int) string {
	out := make([]byte, n)
	buf := make([]byte, 1)
	for i := 0; i < n; {
		_, _ = rand.Read(buf)
		// 248 = 4*62: reject the tail to keep the draw uniform.
		if buf[0] < 248 {
			out[i] = alnum[int(buf[0])%62]
			i++
		}
	}
	return string(out)
}

// HashAPIKey returns the SHA-256 hex digest under which a key is stored.
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// MaskAPIKey shows the first 8 and last 4 characters: "3f9a1b2c…7d4e".
func MaskAPIKey(key string) string {
	if len(key) < 12 {
		return "…"
	}
	return key[:8] + "…" + key[len(key)-4:]
}
