package domain_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/spkey-dev/spkey/internal/domain"
)

// The fuzz targets of identifier normalisation. Each property holds for
// every input: no panic; a refusal is an Invalid *domain.Error naming the
// field; an accepted value is in canonical form and normalises to itself.
// `go test` runs the seeds below and testdata/fuzz/<FuzzName>/;
// scripts/test.sh also fuzzes each target for a bounded time.

// fuzzRefusal checks that err is the Invalid error of field.
func fuzzRefusal(t *testing.T, in string, err error) {
	t.Helper()
	var de *domain.Error
	if !errors.As(err, &de) || de.Code != domain.Invalid || len(de.Details) != 1 || de.Details[0].Field != "f" || de.Message == "" {
		t.Fatalf("%q refused with %#v, want an Invalid error naming field f", in, err)
	}
}

func FuzzNormalizeEmail(f *testing.F) {
	for _, s := range []string{
		"user@example.com", " User@Example.COM ", "a@b.c", "", "no-at", "a@b", "a@@b.com",
		`"quoted local"@example.com`, "John <john@example.com>", "x@[127.0.0.1]", "ü@exämple.com",
		"a@b.c\n", "a\u00a0@b.com", "A\u212a@example.com", strings.Repeat("a", 250) + "@b.co",
		"a.b+tag@sub.example.org", "(comment)a@b.com", "a@b.com, c@d.com",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := domain.NormalizeEmail("f", in)
		if err != nil {
			fuzzRefusal(t, in, err)
			return
		}
		switch {
		case out == "" || len(out) > 254:
			t.Fatalf("%q -> %q: empty or longer than 254 bytes", in, out)
		case out != strings.ToLower(out):
			t.Fatalf("%q -> %q: not lower-case", in, out)
		case out != strings.TrimSpace(out):
			t.Fatalf("%q -> %q: surrounding space", in, out)
		case !utf8.ValidString(out):
			t.Fatalf("%q -> %q: not UTF-8", in, out)
		}
		at := strings.LastIndex(out, "@")
		if at < 1 || !strings.Contains(out[at+1:], ".") {
			t.Fatalf("%q -> %q: no local part, or a domain without a dot", in, out)
		}
		again, err := domain.NormalizeEmail("f", out)
		if err != nil || again != out {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", in, out, again, err)
		}
	})
}

func FuzzNormalizePhone(f *testing.F) {
	for _, s := range []string{
		"+48123456789", "+48 123 456 789", "0048123456789", "+1 (555) 123-4567", "+48.123.456.789",
		"", "+", "123", "48123456789", "+0123456789", "00", "0000123456789", "+1234567", "+1234567890123456",
		"++48123456789", "+48 123\t456789", "+٤٨١٢٣٤٥٦٧٨٩", "+48１２３456789", " +48123456789 ", "+48-",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := domain.NormalizePhone("f", in)
		if err != nil {
			fuzzRefusal(t, in, err)
			return
		}
		d, ok := strings.CutPrefix(out, "+")
		if !ok || len(d) < 8 || len(d) > 15 || d[0] == '0' {
			t.Fatalf("%q -> %q: not + and 8 to 15 digits without a leading 0", in, out)
		}
		for _, c := range []byte(d) {
			if c < '0' || c > '9' {
				t.Fatalf("%q -> %q: holds a non-digit %q", in, out, c)
			}
		}
		again, err := domain.NormalizePhone("f", out)
		if err != nil || again != out {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", in, out, again, err)
		}
	})
}

func FuzzNormalizeUUID(f *testing.F) {
	for _, s := range []string{
		"3f0c6a2e-7d1b-4c1e-9a57-0b1f2d3c4e5f", "3F0C6A2E-7D1B-4C1E-9A57-0B1F2D3C4E5F",
		"{3f0c6a2e-7d1b-4c1e-9a57-0b1f2d3c4e5f}", "3f0c6a2e7d1b4c1e9a570b1f2d3c4e5f", "urn:uuid:3f0c6a2e-7d1b-4c1e-9a57-0b1f2d3c4e5f",
		"3f0c6a2e-7d1b-4c1e-9a57-0b1f2d3c4e5f\n", " 3f0c6a2e-7d1b-4c1e-9a57-0b1f2d3c4e5f", "00000000-0000-0000-0000-000000000000",
		"", "not-a-uuid", "..%2F..", "3f0c6a2e-7d1b-4c1e-9a57-0b1f2d3c4e5g",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := domain.NormalizeUUID("f", in)
		if err != nil {
			fuzzRefusal(t, in, err)
			return
		}
		if len(out) != 36 || out != strings.ToLower(out) || !domain.ValidUUID(out) || !strings.EqualFold(in, out) {
			t.Fatalf("%q -> %q: not the canonical (36 characters, lower-case) form of the input", in, out)
		}
		for i, c := range []byte(out) {
			hyphen := i == 8 || i == 13 || i == 18 || i == 23
			if hyphen != (c == '-') || (!hyphen && !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f')) {
				t.Fatalf("%q -> %q: byte %d is %q", in, out, i, c)
			}
		}
		again, err := domain.NormalizeUUID("f", out)
		if err != nil || again != out {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", in, out, again, err)
		}
	})
}
