package shadow

import "strings"

// The shadow operations a client publishes to.
const (
	OpUpdate = "update"
	OpGet    = "get"
	OpDelete = "delete"
)

// The suffixes of the topics the service publishes on.
const (
	SuffixAccepted  = "accepted"
	SuffixRejected  = "rejected"
	SuffixDelta     = "delta"
	SuffixDocuments = "documents"
)

// AWS IoT's length limits for thing and shadow names.
const (
	MaxThingNameLen  = 128
	MaxShadowNameLen = 64
)

// ParseTopic reads a shadow request topic:
// $aws/things/{thing}/shadow/{op} for the classic shadow (shadowName "") or
// $aws/things/{thing}/shadow/name/{shadowName}/{op} for a named one, op being
// update, get or delete. ok is false for any other topic, response topics
// (/accepted and the like) included, and for names AWS does not allow
// (see ValidThingName, ValidShadowName).
func ParseTopic(topic string) (thing, shadowName, op string, ok bool) {
	parts := strings.Split(topic, "/")
	if len(parts) < 5 || parts[0] != "$aws" || parts[1] != "things" || parts[3] != "shadow" {
		return "", "", "", false
	}
	thing = parts[2]
	switch len(parts) {
	case 5:
		op = parts[4]
	case 7:
		if parts[4] != "name" {
			return "", "", "", false
		}
		shadowName, op = parts[5], parts[6]
		if !ValidShadowName(shadowName) {
			return "", "", "", false
		}
	default:
		return "", "", "", false
	}
	if !ValidThingName(thing) || (op != OpUpdate && op != OpGet && op != OpDelete) {
		return "", "", "", false
	}
	return thing, shadowName, op, true
}

// Topic builds the topic of a shadow operation, with a response suffix
// (accepted, rejected, delta, documents) when suffix is not "": for example
// Topic("lock-7", "", "update", "delta") is
// "$aws/things/lock-7/shadow/update/delta". It does not validate its
// arguments.
func Topic(thing, shadowName, op, suffix string) string {
	var b strings.Builder
	b.WriteString("$aws/things/")
	b.WriteString(thing)
	b.WriteString("/shadow/")
	if shadowName != "" {
		b.WriteString("name/")
		b.WriteString(shadowName)
		b.WriteString("/")
	}
	b.WriteString(op)
	if suffix != "" {
		b.WriteString("/")
		b.WriteString(suffix)
	}
	return b.String()
}

// ValidThingName reports whether s is an AWS IoT thing name: 1 to 128
// characters of a-z, A-Z, 0-9, ':', '_' and '-'.
func ValidThingName(s string) bool { return validName(s, MaxThingNameLen) }

// ValidShadowName reports whether s is an AWS IoT shadow name: 1 to 64
// characters of a-z, A-Z, 0-9, ':', '_' and '-'.
func ValidShadowName(s string) bool { return validName(s, MaxShadowNameLen) }

func validName(s string, maxLen int) bool {
	if len(s) == 0 || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == ':', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}
