package app

import (
	"testing"

	"github.com/spkey-dev/spkey/internal/domain/lock"
)

// TestDecodedStates: an entry answers only for the very bytes it was
// decoded from, and the cache starts over past its bound.
func TestDecodedStates(t *testing.T) {
	var d decodedStates
	a := []byte(`{"lockId":1,"residents":[{"userId":"u1"}]}`)
	d.put("lock", "1", a, lock.State{LockID: 1})
	if v, ok := d.get("lock", "1", []byte(string(a))); !ok || v.(lock.State).LockID != 1 {
		t.Fatalf("equal bytes: %v %v", v, ok)
	}
	if _, ok := d.get("lock", "1", []byte(`{"lockId":1,"residents":[]}`)); ok {
		t.Fatal("changed snapshot answered from the old entry")
	}
	if _, ok := d.get("lock", "2", a); ok {
		t.Fatal("another aggregate answered")
	}
	for i := range maxDecoded + 1 {
		d.put("lock", string(rune(i)), a, lock.State{})
	}
	if n := d.n.Load(); n < 1 || n > maxDecoded {
		t.Fatalf("%d entries after %d puts, bound %d", n, maxDecoded+1, maxDecoded)
	}
}
