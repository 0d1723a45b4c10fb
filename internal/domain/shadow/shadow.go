// Package shadow implements the document semantics of the AWS IoT Device
// Shadow service: the stored document (desired and reported state with
// per-field metadata and a version), the update, get and delete operations,
// the payloads AWS publishes on the /accepted, /rejected, /delta and
// /documents topics, and the parsing of the reserved $aws shadow topics.
//
// It is pure: no I/O and no clock. Every operation takes the current time as
// Unix seconds from the caller and returns the new document and the exact
// payload bytes to publish; the caller stores and publishes them.
package shadow

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Limits bounds what a request may contain. DefaultLimits holds AWS IoT's
// documented values; a zero field takes its default.
type Limits struct {
	// MaxRequestBytes bounds the whole request payload (AWS: the 128 KB MQTT
	// message limit).
	MaxRequestBytes int
	// MaxStateBytes bounds the stored desired and reported state after the
	// update, metadata excluded (AWS: 8 KB per shadow document).
	MaxStateBytes int
	// MaxDepth bounds the nesting of the desired and reported sections: the
	// section's own object is level 1 and every nested object or array adds
	// one (AWS quota: 8 levels).
	MaxDepth int
	// MaxClientTokenBytes bounds clientToken (AWS: 64 bytes).
	MaxClientTokenBytes int
}

// DefaultLimits returns AWS IoT's limits for shadow documents.
func DefaultLimits() Limits {
	return Limits{
		MaxRequestBytes:     128 * 1024,
		MaxStateBytes:       8 * 1024,
		MaxDepth:            8,
		MaxClientTokenBytes: 64,
	}
}

// orDefaults fills l's zero fields from DefaultLimits.
func (l Limits) orDefaults() Limits {
	d := DefaultLimits()
	for _, f := range []struct{ v, def *int }{
		{&l.MaxRequestBytes, &d.MaxRequestBytes},
		{&l.MaxStateBytes, &d.MaxStateBytes},
		{&l.MaxDepth, &d.MaxDepth},
		{&l.MaxClientTokenBytes, &d.MaxClientTokenBytes},
	} {
		if *f.v == 0 {
			*f.v = *f.def
		}
	}
	return l
}

// DeletedVersionTTL is how long, in seconds, a deleted shadow's version is
// remembered: a shadow created again within 48 hours of its deletion
// continues the old version numbers, after that it starts again from 1.
const DeletedVersionTTL int64 = 48 * 3600

// Metadata holds, for every field of desired and reported, when it was last
// updated. Its trees mirror the state: an object field maps to an object of
// its children's metadata, an array to an array of per-element metadata and
// any other value to {"timestamp": seconds}.
type Metadata struct {
	Desired  map[string]any `json:"desired,omitempty"`
	Reported map[string]any `json:"reported,omitempty"`
}

// Document is one stored shadow. The zero Document is a shadow that never
// existed. A deleted shadow keeps Exists false, its Version and DeletedAt so
// that a shadow created again soon continues the version numbers.
type Document struct {
	// Exists reports whether the shadow exists (created and not deleted).
	Exists bool `json:"exists"`
	// Version is the version of the last accepted update, kept after a delete.
	Version int64 `json:"version"`
	// Timestamp is when the shadow was last updated, in Unix seconds.
	Timestamp int64 `json:"timestamp,omitempty"`
	// DeletedAt is when the shadow was deleted, in Unix seconds; 0 if it was not.
	DeletedAt int64 `json:"deletedAt,omitempty"`
	// Desired is the desired state; nil when the section is absent.
	Desired map[string]any `json:"desired,omitempty"`
	// Reported is the reported state; nil when the section is absent.
	Reported map[string]any `json:"reported,omitempty"`
	// Metadata holds the per-field timestamps of Desired and Reported.
	Metadata Metadata `json:"metadata"`
}

// Marshal encodes d for storage as one JSON value. It returns an error only
// when d holds values that are not JSON (which Update never produces).
func Marshal(d Document) ([]byte, error) {
	b, err := encode(d)
	if err != nil {
		return nil, fmt.Errorf("marshal shadow document: %w", err)
	}
	return b, nil
}

// Unmarshal decodes a document stored by Marshal, keeping numbers exactly as
// they were written. It returns an error when b is not such a document.
func Unmarshal(b []byte) (Document, error) {
	var d Document
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&d); err != nil {
		return Document{}, fmt.Errorf("unmarshal shadow document: %w", err)
	}
	if dec.More() {
		return Document{}, fmt.Errorf("unmarshal shadow document: trailing data")
	}
	return d, nil
}

// versionBase is the version the next accepted update follows at now: the
// stored counter, unless the shadow was deleted longer ago than
// DeletedVersionTTL (or never existed).
func (d Document) versionBase(now int64) int64 {
	if !d.Exists && d.DeletedAt != 0 && now-d.DeletedAt > DeletedVersionTTL {
		return 0
	}
	return d.Version
}

// encode marshals v compactly without HTML escaping, so strings keep the
// bytes the device sent.
func encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// mustEncode marshals a payload built by this package from decoded JSON;
// such values always encode, so a failure is a bug.
func mustEncode(v any) []byte {
	b, err := encode(v)
	if err != nil {
		panic(fmt.Sprintf("shadow: encode payload: %v", err))
	}
	return b
}
