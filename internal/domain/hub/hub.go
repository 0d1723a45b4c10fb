// Package hub is the hub aggregate: a manufactured hub (a gateway that runs
// the Matter bridge) provisioned at the factory, claimed by an organization
// for one of its sites, re-claimed, given a role (primary or secondary) and
// suspended. Decide and Apply are pure: time (epoch milliseconds, as
// upstream's hub events carry it) comes in with the command.
package hub

import (
	"github.com/spkey-dev/spkey/internal/domain"
)

// AggregateType is the stream type of hubs in the event store.
const AggregateType = "hub"

// Event type names. They are stored forever; never rename one.
const (
	TypeHubProvisioned = "HubProvisioned"
	TypeHubClaimed     = "HubClaimed"
	TypeHubReClaimed   = "HubReClaimed"
	TypeHubRoleSet     = "HubRoleSet"
	TypeHubSuspended   = "HubSuspended"
)

// The hub statuses (upstream's enum of GET /hubs/{id}/status).
const (
	StatusProvisioned    = "Provisioned"
	StatusClaimed        = "Claimed"
	StatusSuspended      = "Suspended"
	StatusDecommissioned = "Decommissioned"
)

// Bounds of the free-text fields.
const (
	MaxFieldLen  = 200 // serial, model, thingName, vendorName, orgId, siteId, userId
	MaxReasonLen = 1000
)

// State is the hub as folded from its events.
type State struct {
	HubID         string `json:"hubId"`
	Serial        string `json:"serial"`
	Model         string `json:"model"`
	ThingName     string `json:"thingName"`
	VendorName    string `json:"vendorName,omitempty"`
	Status        string `json:"status"`
	OrgID         string `json:"orgId,omitempty"`
	SiteID        string `json:"siteId,omitempty"`
	IsPrimary     bool   `json:"isPrimary"`
	ProvisionedAt int64  `json:"provisionedAt"`
	ClaimedAt     int64  `json:"claimedAt,omitempty"`
	UpdatedAt     int64  `json:"updatedAt"`
}

// Exists reports whether the hub has been provisioned.
func (s State) Exists() bool { return s.HubID != "" }

// HubProvisioned is recorded when a manufactured hub is registered.
type HubProvisioned struct {
	HubID         string `json:"hubId"`
	Serial        string `json:"serial"`
	Model         string `json:"model"`
	ThingName     string `json:"thingName"`
	VendorName    string `json:"vendorName,omitempty"`
	ProvisionedAt int64  `json:"provisionedAt"`
}

// HubClaimed is recorded when an organization claims the hub for a site.
type HubClaimed struct {
	HubID     string `json:"hubId"`
	OrgID     string `json:"orgId"`
	SiteID    string `json:"siteId"`
	ClaimedBy string `json:"claimedBy"`
	ClaimedAt int64  `json:"claimedAt"`
}

// HubReClaimed is recorded when a claimed hub moves to another org/site.
type HubReClaimed struct {
	HubID          string `json:"hubId"`
	PreviousOrgID  string `json:"previousOrgId"`
	PreviousSiteID string `json:"previousSiteId"`
	NewOrgID       string `json:"newOrgId"`
	NewSiteID      string `json:"newSiteId"`
	ReclaimedBy    string `json:"reclaimedBy"`
	Reason         string `json:"reason"`
	ReclaimedAt    int64  `json:"reclaimedAt"`
}

// HubRoleSet is recorded when the hub becomes its site's primary hub or a
// secondary one.
type HubRoleSet struct {
	HubID     string `json:"hubId"`
	IsPrimary bool   `json:"isPrimary"`
	SetBy     string `json:"setBy"`
	SetAt     int64  `json:"setAt"`
}

// HubSuspended is recorded when the hub is suspended.
type HubSuspended struct {
	HubID       string `json:"hubId"`
	Reason      string `json:"reason"`
	SuspendedBy string `json:"suspendedBy"`
	SuspendedAt int64  `json:"suspendedAt"`
}

// Events is the catalogue of the hub's events.
var Events = domain.NewCatalog(AggregateType,
	domain.Def[HubProvisioned](TypeHubProvisioned),
	domain.Def[HubClaimed](TypeHubClaimed),
	domain.Def[HubReClaimed](TypeHubReClaimed),
	domain.Def[HubRoleSet](TypeHubRoleSet),
	domain.Def[HubSuspended](TypeHubSuspended),
)

// Apply returns the state after e. Unknown events leave the state as it is.
func Apply(s State, e domain.Event) State {
	switch v := e.(type) {
	case HubProvisioned:
		s = State{HubID: v.HubID, Serial: v.Serial, Model: v.Model, ThingName: v.ThingName, VendorName: v.VendorName,
			Status: StatusProvisioned, ProvisionedAt: v.ProvisionedAt, UpdatedAt: v.ProvisionedAt}
	case HubClaimed:
		s.Status, s.OrgID, s.SiteID, s.ClaimedAt, s.UpdatedAt = StatusClaimed, v.OrgID, v.SiteID, v.ClaimedAt, v.ClaimedAt
	case HubReClaimed:
		// A hub that moves to another site is not that site's primary.
		s.OrgID, s.SiteID, s.IsPrimary, s.UpdatedAt = v.NewOrgID, v.NewSiteID, false, v.ReclaimedAt
	case HubRoleSet:
		s.IsPrimary, s.UpdatedAt = v.IsPrimary, v.SetAt
	case HubSuspended:
		s.Status, s.UpdatedAt = StatusSuspended, v.SuspendedAt
	}
	return s
}
