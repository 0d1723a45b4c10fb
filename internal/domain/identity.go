package domain

import (
	"net/mail"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// ValidUUID reports whether s is an RFC 4122 textual UUID (any version).
func ValidUUID(s string) bool { return uuidRE.MatchString(s) }

// NormalizeUUID lower-cases a valid UUID; it returns an Invalid error naming
// field otherwise.
func NormalizeUUID(field, s string) (string, error) {
	if !ValidUUID(s) {
		return "", InvalidField(field, "Invalid UUID format")
	}
	return strings.ToLower(s), nil
}

var canonicalUUIDRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// CanonicalUUID checks that s is a UUID in its canonical text form: 36
// characters, lower-case hex digits in groups of 8-4-4-4-12. User and ring
// ids are compared as strings, so no other spelling (upper case, braces,
// "urn:uuid:") is accepted. It returns an Invalid error naming field.
func CanonicalUUID(field, s string) (string, error) {
	if !canonicalUUIDRE.MatchString(s) {
		return "", InvalidField(field, field+" must be a UUID in lower-case canonical form (8-4-4-4-12 hex digits, e.g. 3f2b8c1e-0d4a-4b6e-9f1a-2c3d4e5f6a7b)")
	}
	return s, nil
}

// MaxID is the largest lock or delivery id: 2^53-1, the largest integer a
// JSON client (JavaScript's Number) reads exactly.
const MaxID = 1<<53 - 1

// ParseID reads a positive integer id in canonical decimal form: digits
// only, no sign, no leading zero, no exponent or spaces, 1 to MaxID. It
// returns an Invalid error naming field.
func ParseID(field, s string) (int64, error) {
	bad := len(s) == 0 || s[0] == '0'
	for i := 0; i < len(s) && !bad; i++ {
		bad = s[i] < '0' || s[i] > '9'
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if bad || err != nil || n < 1 || n > MaxID {
		return 0, InvalidField(field, field+" must be a positive integer written with digits only (no sign, leading zero or exponent), at most 9007199254740991")
	}
	return n, nil
}

var orgIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$`)

// ValidOrgID reports whether s is an organization id: 1-128 characters of
// ASCII letters, digits and . _ : @ -, starting with a letter or digit.
// Org ids are case-sensitive ("Acme" and "acme" are two organizations).
func ValidOrgID(s string) bool { return orgIDRE.MatchString(s) }

// NormalizeEmail trims and lower-cases an address and checks its form. It
// returns an Invalid error naming field when the address is malformed.
func NormalizeEmail(field, s string) (string, error) {
	e := strings.ToLower(strings.TrimSpace(s))
	if e == "" {
		return "", InvalidField(field, "Email is required")
	}
	a, err := mail.ParseAddress(e)
	if err != nil || a.Address != e || a.Name != "" || !strings.Contains(e[strings.LastIndex(e, "@")+1:], ".") || len(e) > 254 {
		return "", InvalidField(field, "Invalid email format")
	}
	return e, nil
}

// NormalizePhone turns an international number ("+48 123 456 789",
// "0048123456789") into E.164 form ("+48123456789"). Spaces, dashes, dots
// and parentheses are ignored. It returns an Invalid error naming field when
// the number is not international or has the wrong length.
func NormalizePhone(field, s string) (string, error) {
	t := strings.TrimSpace(s)
	var digits strings.Builder
	for i, r := range t {
		switch {
		case unicode.IsDigit(r) && r < 128:
			digits.WriteRune(r)
		case r == '+' && i == 0:
		case r == ' ' || r == '-' || r == '.' || r == '(' || r == ')':
		default:
			return "", InvalidField(field, "Invalid phone number: use international form, e.g. +48123456789")
		}
	}
	d := digits.String()
	switch {
	case strings.HasPrefix(t, "+"):
	case strings.HasPrefix(d, "00"):
		d = d[2:]
	default:
		return "", InvalidField(field, "Invalid phone number: use international form, e.g. +48123456789")
	}
	if len(d) < 8 || len(d) > 15 || d[0] == '0' {
		return "", InvalidField(field, "Invalid phone number: use international form, e.g. +48123456789")
	}
	return "+" + d, nil
}

// MaskEmail keeps the first character and the domain: "a***@example.com".
func MaskEmail(e string) string {
	at := strings.LastIndex(e, "@")
	if at < 1 {
		return "***"
	}
	return e[:1] + "***" + e[at:]
}

// MaskPhone keeps the last four digits: "***4567".
func MaskPhone(p string) string {
	if len(p) <= 4 {
		return "***"
	}
	return "***" + p[len(p)-4:]
}
