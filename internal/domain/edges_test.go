package domain_test

import (
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/spkey-dev/spkey/internal/domain"
)

func TestCanonicalUUID(t *testing.T) {
	const ok = "3f2b8c1e-0d4a-4b6e-9f1a-2c3d4e5f6a7b"
	for _, c := range []struct {
		in   string
		good bool
	}{
		{ok, true},
		{"00000000-0000-0000-0000-000000000000", true},
		{strings.ToUpper(ok), false},
		{"3F2b8c1e-0d4a-4b6e-9f1a-2c3d4e5f6a7b", false},
		{"{" + ok + "}", false},
		{"urn:uuid:" + ok, false},
		{strings.ReplaceAll(ok, "-", ""), false},
		{ok + "\n", false},
		{" " + ok, false},
		{"../../x", false},
		{"", false},
		{"3f2b8c1e-0d4a-4b6e-9f1a-2c3d4e5f6a7g", false},
	} {
		got, err := domain.CanonicalUUID("id", c.in)
		if (err == nil) != c.good || (c.good && got != c.in) {
			t.Errorf("CanonicalUUID(%q) = %q, %v; want ok=%v", c.in, got, err, c.good)
		}
		if err != nil && domain.ErrorCode(err) != domain.Invalid {
			t.Errorf("CanonicalUUID(%q): code %s", c.in, domain.ErrorCode(err))
		}
	}
}

func TestParseID(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"1", 1}, {"1001", 1001}, {"9007199254740991", 1<<53 - 1},
		{"", 0}, {"0", 0}, {"007", 0}, {"+1001", 0}, {"-1", 0}, {"1e3", 0}, {" 12", 0}, {"12 ", 0},
		{"1.0", 0}, {"0x10", 0}, {"1_000", 0}, {"9007199254740992", 0}, {"99999999999999999999", 0}, {"١", 0},
	} {
		got, err := domain.ParseID("id", c.in)
		if got != c.want || (err == nil) != (c.want != 0) {
			t.Errorf("ParseID(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
}

func TestValidOrgID(t *testing.T) {
	for in, want := range map[string]bool{
		"acme": true, "Acme-1": true, "a.b_c:d@e": true, strings.Repeat("a", 128): true,
		"": false, "-acme": false, "a b": false, "../x": false, "a/b": false, strings.Repeat("a", 129): false, "zoë": false,
	} {
		if got := domain.ValidOrgID(in); got != want {
			t.Errorf("ValidOrgID(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestCheckText(t *testing.T) {
	for _, c := range []struct {
		in        string
		max       int
		multiline bool
		good      bool
	}{
		{"Zoë O'Brien-Łukasz 李", 100, false, true},
		{"", 100, false, true},
		{strings.Repeat("é", 100), 100, false, true},
		{strings.Repeat("é", 101), 100, false, false},
		{"a\nb", 100, false, false},
		{"a\nb\tc", 100, true, true},
		{"a\r\nb", 100, true, false},
		{"a\x00", 100, true, false},
		{"a\x7f", 100, false, false},
		{"a\u0085", 100, true, false},
		{"a\u2028b", 100, true, false},
		{"a\u2029b", 100, true, false},
		{"a\u061Cb", 100, false, false},
		{"a\u200Eb", 100, false, false},
		{"a\u200Fb", 100, false, false},
		{"a\u202Ab", 100, false, false},
		{"a\u202Eb", 100, true, false},
		{"a\u2066b", 100, false, false},
		{"a\u2069b", 100, false, false},
		{"a\u200Db", 100, false, true}, // zero-width joiner: part of emoji sequences
		{"a\xffb", 100, false, false},
	} {
		err := domain.CheckText("name", c.in, c.max, c.multiline)
		if (err == nil) != c.good {
			t.Errorf("CheckText(%q, %d, %v) = %v; want ok=%v", c.in, c.max, c.multiline, err, c.good)
		}
		if err != nil {
			var de *domain.Error
			if e, ok := err.(*domain.Error); ok {
				de = e
			}
			if de == nil || de.Code != domain.Invalid || len(de.Details) != 1 || de.Details[0].Field != "name" {
				t.Errorf("CheckText(%q): %#v, want Invalid naming name", c.in, err)
			}
		}
	}
}

// FuzzParseID: an accepted id is exactly the decimal form of its value.
func FuzzParseID(f *testing.F) {
	for _, s := range []string{"1", "007", "+1", "1e3", " 12", "9007199254740991", "9007199254740992", "-0", "١"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := domain.ParseID("id", s)
		if err != nil {
			return
		}
		if n < 1 || n > domain.MaxID || strconv.FormatInt(n, 10) != s {
			t.Fatalf("ParseID(%q) = %d", s, n)
		}
	})
}

// FuzzCanonicalUUID: an accepted id is 36 characters of lower-case hex and
// dashes, unchanged.
func FuzzCanonicalUUID(f *testing.F) {
	for _, s := range []string{"3f2b8c1e-0d4a-4b6e-9f1a-2c3d4e5f6a7b", "3F2B8C1E-0D4A-4B6E-9F1A-2C3D4E5F6A7B", "{3f2b8c1e-0d4a-4b6e-9f1a-2c3d4e5f6a7b}", "../..", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := domain.CanonicalUUID("id", s)
		if err != nil {
			return
		}
		if got != s || len(s) != 36 || strings.Trim(s, "0123456789abcdef-") != "" || strings.Count(s, "-") != 4 {
			t.Fatalf("CanonicalUUID(%q) accepted", s)
		}
	})
}

// FuzzCheckText: accepted text is valid UTF-8 within the limit and holds
// no control (but line feed and tab when multiline), separator or bidi
// formatting character.
func FuzzCheckText(f *testing.F) {
	for _, s := range []string{"Zoë", "a\nb", "evil\u202Egnp.exe", "a\u2066b\u2069", "\x00", "\xff", "a\u2028b"} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, s string, multiline bool) {
		if domain.CheckText("name", s, 50, multiline) != nil {
			return
		}
		if !utf8.ValidString(s) || utf8.RuneCountInString(s) > 50 {
			t.Fatalf("CheckText accepted %q", s)
		}
		for _, r := range s {
			ok := !unicode.IsControl(r) || (multiline && (r == '\n' || r == '\t'))
			if !ok || r == '\u2028' || r == '\u2029' || unicode.Is(unicode.Bidi_Control, r) {
				t.Fatalf("CheckText accepted %q (U+%04X)", s, r)
			}
		}
	})
}
