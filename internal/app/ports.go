package app

import (
	"context"

	"github.com/spkey-dev/spkey/internal/store"
)

// userVault reads the user vault, the store of people's addresses (PII):
// a store.Store outside a transaction, a store.Tx inside one.
type userVault interface {
	// User finds the user whose column by equals key.
	User(ctx context.Context, by store.UserBy, key string) (store.User, bool, error)
	// UserStanding says what ties userID to tenant orgID.
	UserStanding(ctx context.Context, userID, orgID string) (store.Standing, error)
}

var (
	_ userVault = (*store.Store)(nil)
	_ userVault = (*store.Tx)(nil)
)
