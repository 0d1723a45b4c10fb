package hub

import (
	"regexp"

	"github.com/spkey-dev/spkey/internal/domain"
)

// required checks a required one-line field of at most MaxFieldLen
// characters.
func required(field, v string, max int) error {
	if v == "" {
		return domain.InvalidField(field, field+" is required")
	}
	return domain.CheckText(field, v, max, false)
}

// optional checks an optional one-line field.
func optional(field, v string) error {
	if v == "" {
		return nil
	}
	return domain.CheckText(field, v, MaxFieldLen, false)
}

// thingNameRE is an AWS IoT thing name (also the hub's MQTT client id and
// topic segment: no '/', '+' or '#').
var thingNameRE = regexp.MustCompile(`^[a-zA-Z0-9:_-]{1,128}$`)

func notFound(s State) error {
	if !s.Exists() {
		return domain.Errorf(domain.NotFound, "Hub not found")
	}
	return nil
}

// Provision asks for a new hub.
type Provision struct {
	HubID      string
	Serial     string
	Model      string
	ThingName  string // defaults to HubID
	VendorName string
	Now        int64 // epoch ms
}

// CheckProvision validates c (upstream's command schema: hubId a UUID,
// serial and model non-empty) and returns it with its defaults and the
// canonical hub id.
func CheckProvision(c Provision) (Provision, error) {
	id, err := domain.CanonicalUUID("hubId", c.HubID)
	if err != nil {
		return c, err
	}
	c.HubID = id
	if err := required("serial", c.Serial, MaxFieldLen); err != nil {
		return c, err
	}
	if err := required("model", c.Model, MaxFieldLen); err != nil {
		return c, err
	}
	if c.ThingName != "" && !thingNameRE.MatchString(c.ThingName) {
		return c, domain.InvalidField("thingName", "thingName must be 1 to 128 characters of a-z, A-Z, 0-9, ':', '_' and '-'")
	}
	if err := optional("vendorName", c.VendorName); err != nil {
		return c, err
	}
	if c.ThingName == "" {
		c.ThingName = c.HubID
	}
	return c, nil
}

// DecideProvision returns HubProvisioned for a new hub, and no events when
// it already exists: provisioning is idempotent. It returns Invalid for a
// bad command (CheckProvision).
func DecideProvision(s State, c Provision) ([]domain.Event, error) {
	c, err := CheckProvision(c)
	if err != nil {
		return nil, err
	}
	if s.Exists() {
		return nil, nil
	}
	return []domain.Event{HubProvisioned{HubID: c.HubID, Serial: c.Serial, Model: c.Model, ThingName: c.ThingName,
		VendorName: c.VendorName, ProvisionedAt: c.Now}}, nil
}

// Claim binds a provisioned hub to an org's site. OrgID is the org the
// caller may claim for (the app binds it to the API key's).
type Claim struct {
	OrgID, SiteID, UserID string
	Now                   int64
}

// DecideClaim returns HubClaimed. It returns NotFound for a missing hub
// and Invalid for a bad command or a hub that is not (only) provisioned:
// already claimed, suspended or decommissioned.
func DecideClaim(s State, c Claim) ([]domain.Event, error) {
	if err := notFound(s); err != nil {
		return nil, err
	}
	for _, f := range []struct{ name, v string }{{"orgId", c.OrgID}, {"siteId", c.SiteID}, {"userId", c.UserID}} {
		if err := required(f.name, f.v, MaxFieldLen); err != nil {
			return nil, err
		}
	}
	if s.Status != StatusProvisioned {
		if s.Status == StatusClaimed {
			return nil, domain.Errorf(domain.Invalid, "Hub is already claimed")
		}
		return nil, domain.Errorf(domain.Invalid, "Hub is %s: only a provisioned hub can be claimed", s.Status)
	}
	return []domain.Event{HubClaimed{HubID: s.HubID, OrgID: c.OrgID, SiteID: c.SiteID, ClaimedBy: c.UserID, ClaimedAt: c.Now}}, nil
}

// ReClaim moves a claimed hub to another org and site.
type ReClaim struct {
	NewOrgID, NewSiteID, Reason, UserID string
	Now                                 int64
}

// DecideReClaim returns HubReClaimed with the previous and the new org and
// site. It returns NotFound for a missing hub and Invalid for a bad
// command (reason is required) or a hub that is not claimed.
func DecideReClaim(s State, c ReClaim) ([]domain.Event, error) {
	if err := notFound(s); err != nil {
		return nil, err
	}
	for _, f := range []struct{ name, v string }{{"newOrgId", c.NewOrgID}, {"newSiteId", c.NewSiteID}, {"userId", c.UserID}} {
		if err := required(f.name, f.v, MaxFieldLen); err != nil {
			return nil, err
		}
	}
	if err := required("reason", c.Reason, MaxReasonLen); err != nil {
		return nil, err
	}
	if s.Status != StatusClaimed {
		return nil, domain.Errorf(domain.Invalid, "Hub is not claimed (status %s)", s.Status)
	}
	return []domain.Event{HubReClaimed{HubID: s.HubID, PreviousOrgID: s.OrgID, PreviousSiteID: s.SiteID, NewOrgID: c.NewOrgID,
		NewSiteID: c.NewSiteID, ReclaimedBy: c.UserID, Reason: c.Reason, ReclaimedAt: c.Now}}, nil
}

// SetRole makes the hub its site's primary hub or a secondary one.
type SetRole struct {
	IsPrimary bool
	UserID    string // a UUID (upstream's command schema)
	Now       int64
}

// DecideSetRole returns HubRoleSet, or nothing when the hub already has
// the role. It returns NotFound for a missing hub and Invalid for a bad
// userId or a hub that is not claimed. Demoting the site's previous
// primary is DecideDemote's, on that hub.
func DecideSetRole(s State, c SetRole) ([]domain.Event, error) {
	if err := notFound(s); err != nil {
		return nil, err
	}
	if c.UserID == "" {
		return nil, domain.InvalidField("userId", "userId is required")
	}
	if _, err := domain.CanonicalUUID("userId", c.UserID); err != nil {
		return nil, err
	}
	if s.Status != StatusClaimed {
		return nil, domain.Errorf(domain.Invalid, "Hub is not claimed (status %s): only a claimed hub has a role", s.Status)
	}
	if s.IsPrimary == c.IsPrimary {
		return nil, nil
	}
	return []domain.Event{HubRoleSet{HubID: s.HubID, IsPrimary: c.IsPrimary, SetBy: c.UserID, SetAt: c.Now}}, nil
}

// DecideDemote returns HubRoleSet isPrimary=false for other when it is the
// primary hub of the site (orgID, siteID) that promoted, another hub,
// is becoming the primary of; nothing otherwise. One site has one primary.
func DecideDemote(other State, promoted, orgID, siteID, userID string, now int64) []domain.Event {
	if !other.Exists() || other.HubID == promoted || !other.IsPrimary || other.OrgID != orgID || other.SiteID != siteID {
		return nil
	}
	return []domain.Event{HubRoleSet{HubID: other.HubID, IsPrimary: false, SetBy: userID, SetAt: now}}
}

// Suspend suspends the hub.
type Suspend struct {
	Reason, UserID string
	Now            int64
}

// DecideSuspend returns HubSuspended. It returns NotFound for a missing
// hub and Invalid for a bad command (reason is required) or a hub already
// suspended or decommissioned.
func DecideSuspend(s State, c Suspend) ([]domain.Event, error) {
	if err := notFound(s); err != nil {
		return nil, err
	}
	if err := required("userId", c.UserID, MaxFieldLen); err != nil {
		return nil, err
	}
	if err := required("reason", c.Reason, MaxReasonLen); err != nil {
		return nil, err
	}
	if s.Status == StatusSuspended || s.Status == StatusDecommissioned {
		return nil, domain.Errorf(domain.Invalid, "Hub is already %s", s.Status)
	}
	return []domain.Event{HubSuspended{HubID: s.HubID, Reason: c.Reason, SuspendedBy: c.UserID, SuspendedAt: c.Now}}, nil
}

// commissioningCodeRE is upstream's pattern of a Matter pairing code: 11
// or 21 digits (manual code) or an "MT:" QR payload.
var commissioningCodeRE = regexp.MustCompile(`^(\d{11}|\d{21}|MT:.+)$`)

// MaxCommandLen bounds a hub command's name; MaxCodeLen a pairing code.
const (
	MaxCommandLen = 128
	MaxCodeLen    = 512
)

// CheckCommissioningCode validates a Matter pairing code.
func CheckCommissioningCode(code string) error {
	if code == "" {
		return domain.InvalidField("commissioningCode", "commissioningCode is required")
	}
	if len(code) > MaxCodeLen || !commissioningCodeRE.MatchString(code) {
		return domain.InvalidField("commissioningCode", "commissioningCode must be 11 or 21 digits or an MT: QR payload")
	}
	return nil
}

// CheckCommand validates a hub command's name (free-form, upstream
// forwards it verbatim; one line, bounded).
func CheckCommand(command string) error {
	if command == "" {
		return domain.InvalidField("command", "command is required")
	}
	return domain.CheckText("command", command, MaxCommandLen, false)
}

// CommandCommission is the hub command CommissionDevice writes.
const CommandCommission = "commission_with_code"
