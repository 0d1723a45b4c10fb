package domain

import (
	"fmt"
	"unicode"
	"unicode/utf8"
)

// Text limits, in characters (Unicode code points), of the free-text
// fields that are stored and shown to other people.
const (
	MaxNameLen    = 100 // resident names, a user's firstName and lastName
	MaxOrgNameLen = 200 // an organization's name
)

// CheckText checks one free-text field that is stored and shown to others
// (names, messages): valid UTF-8, at most max characters, no control
// characters (C0, DEL, C1; multiline allows only line feed and tab), no
// line or paragraph separators (U+2028, U+2029) and no bidirectional
// formatting characters (Unicode's Bidi_Control: U+061C, U+200E, U+200F,
// U+202A-U+202E, U+2066-U+2069), which make text display as something else
// ("evil\u202Egnp.exe"). It returns an Invalid error naming field.
func CheckText(field, s string, max int, multiline bool) error {
	if !utf8.ValidString(s) {
		return InvalidField(field, field+" must be valid UTF-8")
	}
	if n := utf8.RuneCountInString(s); n > max {
		return InvalidField(field, fmt.Sprintf("%s must be at most %d characters (got %d)", field, max, n))
	}
	for _, r := range s {
		switch {
		case multiline && (r == '\n' || r == '\t'):
		case unicode.IsControl(r) || r == '\u2028' || r == '\u2029':
			if multiline {
				return InvalidField(field, fmt.Sprintf("%s must not contain control characters other than line breaks and tabs (found U+%04X)", field, r))
			}
			return InvalidField(field, fmt.Sprintf("%s must be one line without control characters (found U+%04X)", field, r))
		case unicode.Is(unicode.Bidi_Control, r):
			return InvalidField(field, fmt.Sprintf("%s must not contain bidirectional formatting characters (found U+%04X)", field, r))
		}
	}
	return nil
}
