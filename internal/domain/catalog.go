package domain

import (
	"encoding/json"
	"fmt"
	"reflect"
)

// Event is a domain event: a plain struct value whose JSON encoding is the
// stored payload (pinned by golden files). Its stable type name is not a
// method of its own: the Catalog of its aggregate says it.
type Event any

// EventDef is one entry of a Catalog: a stored type name and its payload
// type. Make one with Def.
type EventDef struct {
	// Name is the stored type name. It is stored forever; never rename it.
	Name string
	// Payload is the zero value of the payload type (a prototype, e.g. for
	// a schema generator).
	Payload Event
	decode  func(data []byte) (Event, error)
}

// Def declares the event type E under the stored type name name.
func Def[E any](name string) EventDef {
	var zero E
	return EventDef{Name: name, Payload: zero, decode: func(data []byte) (Event, error) {
		var e E
		err := json.Unmarshal(data, &e)
		return e, err
	}}
}

// Catalog is the list of one aggregate's event types: what decodes a
// stored payload and what names an event. It is built once per aggregate
// (NewCatalog) and never changed after.
type Catalog struct {
	aggregate string
	defs      []EventDef
	byName    map[string]int
	byType    map[reflect.Type]int
}

// NewCatalog returns the catalogue of aggregate (its stream type) with the
// events defs. It panics on a repeated name or payload type: a catalogue
// is a program constant.
func NewCatalog(aggregate string, defs ...EventDef) *Catalog {
	c := &Catalog{aggregate: aggregate, defs: defs, byName: make(map[string]int, len(defs)), byType: make(map[reflect.Type]int, len(defs))}
	for i, d := range defs {
		t := reflect.TypeOf(d.Payload)
		if _, dup := c.byName[d.Name]; dup || d.Name == "" {
			panic(fmt.Sprintf("domain: catalogue %s: event name %q empty or repeated", aggregate, d.Name))
		}
		if _, dup := c.byType[t]; dup || t == nil {
			panic(fmt.Sprintf("domain: catalogue %s: payload type %v nil or repeated", aggregate, t))
		}
		c.byName[d.Name], c.byType[t] = i, i
	}
	return c
}

// Aggregate returns the stream type the catalogue belongs to.
func (c *Catalog) Aggregate() string { return c.aggregate }

// Decode turns a stored payload back into its event (a value of the
// payload type). It returns an error for an unknown type or a malformed
// payload.
func (c *Catalog) Decode(typ string, data []byte) (Event, error) {
	i, ok := c.byName[typ]
	if !ok {
		return nil, fmt.Errorf("%s: unknown event type %q", c.aggregate, typ)
	}
	e, err := c.defs[i].decode(data)
	if err != nil {
		return nil, fmt.Errorf("%s: decode %s: %w", c.aggregate, typ, err)
	}
	return e, nil
}

// Name returns the stored type name of e, or "" when e is not an event of
// this catalogue.
func (c *Catalog) Name(e Event) string {
	if i, ok := c.byType[reflect.TypeOf(e)]; ok {
		return c.defs[i].Name
	}
	return ""
}

// Names returns the stored type names, in declaration order.
func (c *Catalog) Names() []string {
	out := make([]string, len(c.defs))
	for i, d := range c.defs {
		out[i] = d.Name
	}
	return out
}

// Events returns the entries (name and payload prototype), in declaration
// order.
func (c *Catalog) Events() []EventDef { return append([]EventDef(nil), c.defs...) }
