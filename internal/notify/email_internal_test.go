package notify

import "testing"

// TestStripCRLF: text recorded before names were limited to one line (a
// visitor name "Eve\r\nBcc: …") stays inside its header.
func TestStripCRLF(t *testing.T) {
	for in, want := range map[string]string{
		"Zoë":                             "Zoë",
		"Eve\r\nBcc: mallory@example.net": "Eve Bcc: mallory@example.net",
		"a\rb\nc":                         "a b c",
	} {
		if got := stripCRLF(in); got != want {
			t.Errorf("stripCRLF(%q) = %q, want %q", in, got, want)
		}
	}
}
