package app

import (
	"encoding/json"
	"errors"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/es"
)

// snapshotOf wraps a loaded snapshot so helpers can return it alongside
// state without positional confusion.
type snapshotOf struct{ es.Snapshot }

func asDomain(err error, target **domain.Error) bool { return errors.As(err, target) }

func unmarshalState(b []byte, v any) error { return json.Unmarshal(b, v) }
