package domain

import (
	"net/mail"
	"regexp"
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
