package domain_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/domain"
)

type pinged struct {
	ID string `json:"id"`
}

type ponged struct {
	ID string `json:"id"`
	N  int    `json:"n,omitempty"`
}

func TestCatalog(t *testing.T) {
	c := domain.NewCatalog("toy", domain.Def[pinged]("Pinged"), domain.Def[ponged]("Ponged"))
	if got := c.Name(ponged{ID: "a"}); got != "Ponged" {
		t.Errorf("Name(ponged) = %q, want Ponged", got)
	}
	for _, foreign := range []domain.Event{&ponged{}, struct{}{}, nil, "Pinged"} {
		if got := c.Name(foreign); got != "" {
			t.Errorf("Name(%#v) = %q, want \"\" (not in the catalogue)", foreign, got)
		}
	}
	e, err := c.Decode("Ponged", []byte(`{"id":"a","n":2}`))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(domain.Event(ponged{ID: "a", N: 2}), e); diff != "" {
		t.Errorf("Decode (-want +got):\n%s", diff)
	}
	if _, err := c.Decode("Nope", []byte(`{}`)); err == nil || !strings.Contains(err.Error(), "toy: unknown event type") {
		t.Errorf("Decode of an unknown type: %v", err)
	}
	if _, err := c.Decode("Pinged", []byte(`{"id":1}`)); err == nil {
		t.Error("Decode of a malformed payload: no error")
	}
	if diff := cmp.Diff([]string{"Pinged", "Ponged"}, c.Names()); diff != "" {
		t.Errorf("Names (-want +got):\n%s", diff)
	}
	defs := c.Events()
	if len(defs) != 2 || defs[1].Name != "Ponged" || defs[1].Payload != (ponged{}) || c.Aggregate() != "toy" {
		t.Errorf("Events() = %+v, Aggregate() = %q", defs, c.Aggregate())
	}
	for name, defs := range map[string][]domain.EventDef{
		"repeated name": {domain.Def[pinged]("X"), domain.Def[ponged]("X")},
		"repeated type": {domain.Def[pinged]("X"), domain.Def[pinged]("Y")},
		"empty name":    {domain.Def[pinged]("")},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewCatalog with a %s did not panic", name)
				}
			}()
			domain.NewCatalog("toy", defs...)
		}()
	}
}
