package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/hub"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/domain/shadow"
	"github.com/spkey-dev/spkey/internal/store"
)

// Hubs: upstream's hub lifecycle (ProvisionHub, ClaimHub, ReClaimHub,
// SetHubRole, SuspendHub), the two hub device commands (SendHubCommand,
// CommissionDevice) and GET /hubs/{id}/status.
//
// Who may do what (upstream documents only "JWT or X-API-Key" and the
// cross-org ClaimHub of super keys; spkey decides the rest):
//   - ProvisionHub is the factory's: a super API key only (any other caller
//     gets 403), so no tenant can take a hub id or a thing name first.
//   - ClaimHub: any tenant API key may claim a provisioned, unclaimed hub
//     by its id (the factory flow: the id comes with the hardware), into
//     its own org (a different orgId answers 403); a super key may claim
//     into any registered org.
//   - Everything else on a claimed hub: the API key of the hub's org or a
//     super key; on an unclaimed one: a super key. Another tenant's key
//     gets 403, a missing hub 404 (as the lock routes answer).
//   - JWT users do not manage hubs (403): hubs have no owner, only an org.
//
// ClaimHub, ReClaimHub, SetHubRole and SuspendHub need the hub online
// (its thing connected, hubOnline): offline they answer 502 and record
// nothing. SendHubCommand and CommissionDevice write the desired state of
// the hub's classic shadow (hubCommand) and record no event.

// MsgHubUsers is the refusal of a JWT user on the hub routes.
const MsgHubUsers = "Hubs are managed with an organization's X-API-Key, not with user tokens"

// MsgProvisionSuper is the refusal of ProvisionHub for a non-super caller.
const MsgProvisionSuper = "ProvisionHub needs a super API key (hubs are provisioned at the factory)"

// hubTenant refuses callers that are not API keys (or the admin).
func hubTenant(p Principal) error {
	if err := requireAuth(p); err != nil {
		return err
	}
	if p.Kind != TenantCaller && !p.Admin {
		return domain.Errorf(domain.Forbidden, MsgHubUsers)
	}
	return nil
}

// authorizeHub: the hub's org's key or a super key (or the admin).
func authorizeHub(p Principal, st hub.State) error {
	if p.Admin || p.Super || (st.OrgID != "" && st.OrgID == p.OrgID) {
		return nil
	}
	return domain.Errorf(domain.Forbidden, "This API key's organization does not own hub %s", st.HubID)
}

// hubKey checks a hub id of a path: an id that is not a canonical UUID
// names no hub.
func hubKey(id string) (string, error) {
	if _, err := domain.CanonicalUUID("hubId", id); err != nil {
		return "", domain.Errorf(domain.NotFound, "Hub %s not found", id)
	}
	return id, nil
}

// sameHub checks the body's hubId against the path's.
func sameHub(id, bodyID string) error {
	if bodyID == "" {
		return domain.InvalidField("hubId", "hubId is required")
	}
	if bodyID != id {
		return domain.InvalidField("hubId", "hubId must be the hub id of the path")
	}
	return nil
}

func (s *Service) nowMs() int64 { return s.now().UnixMilli() }

// hubOnline says whether thing is connected to this node's broker or, as
// the presence table says, to another node's.
func (s *Service) hubOnline(ctx context.Context, tx *store.Tx, thing string) (bool, error) {
	if s.devices != nil && s.devices.Online(thing) {
		return true, nil
	}
	p, found, err := tx.Presence(ctx, thing)
	if err != nil {
		return false, err
	}
	return found && p.Online, nil
}

func hubOffline(st hub.State) error {
	return domain.Errorf(domain.BadGateway, "Hub %s is offline (thing %s is not connected); nothing was recorded", st.HubID, st.ThingName)
}

// registeredOrg checks that orgID is a registered tenant.
func registeredOrg(ctx context.Context, tx *store.Tx, field, orgID string) error {
	t, _, err := load(ctx, tx, tenantAgg, orgID)
	if err != nil {
		return err
	}
	if !t.Exists() {
		return domain.InvalidField(field, fmt.Sprintf("%s %q is not a registered organization", field, orgID))
	}
	return nil
}

// ProvisionHubInput is the body of ProvisionHub.
type ProvisionHubInput struct {
	HubID      string `json:"hubId"`
	Serial     string `json:"serial"`
	Model      string `json:"model"`
	ThingName  string `json:"thingName,omitempty"`
	VendorName string `json:"vendorName,omitempty"`
}

// ProvisionHub registers hub id (super API keys only). It answers
// Created=false with no event when the hub exists.
func (s *Service) ProvisionHub(ctx context.Context, c Call, id string, in ProvisionHubInput) (Answer[hub.HubProvisioned], error) {
	type answer = Answer[hub.HubProvisioned]
	if err := hubTenant(c.P); err != nil {
		return answer{}, err
	}
	if !c.P.Super && !c.P.Admin {
		return answer{}, domain.Errorf(domain.Forbidden, MsgProvisionSuper)
	}
	cmd, err := hub.CheckProvision(hub.Provision{HubID: in.HubID, Serial: in.Serial, Model: in.Model, ThingName: in.ThingName, VendorName: in.VendorName})
	if err != nil {
		return answer{}, err
	}
	if cmd.HubID != id {
		return answer{}, domain.InvalidField("hubId", "hubId must be the hub id of the path")
	}
	if strings.HasPrefix(cmd.ThingName, lock.ThingPrefix) {
		return answer{}, domain.InvalidField("thingName", "thingName must not start with "+lock.ThingPrefix+" (the things of locks)")
	}
	c.Aggregate = "hub/" + id
	return run(ctx, s, c, func(ctx context.Context, tx *store.Tx) (answer, error) {
		st, snap, err := load(ctx, tx, hubAgg, id)
		if err != nil {
			return answer{}, err
		}
		cmd.Now = s.nowMs()
		evs, err := hub.DecideProvision(st, cmd)
		if err != nil || len(evs) == 0 {
			return answer{AggregateID: id, Version: snap.Version}, err
		}
		_, v, ev, err := save(ctx, tx, hubAgg, snap, st, evs, s.stamp())
		return answer{Created: true, AggregateID: id, Version: v, Event: eventOf[hub.HubProvisioned](ev)}, err
	})
}

// hubCommand runs decide on existing hub id for a caller hubTenant lets
// through; authorize decides on the state (authorizeHub for all but
// ClaimHub). With online, the hub must be connected (502 otherwise),
// checked after decide so that a refused command answers its 400 first.
func hubCommand[P domain.Event](ctx context.Context, s *Service, c Call, id string, online bool,
	authorize func(hub.State) error,
	decide func(ctx context.Context, tx *store.Tx, st hub.State, now int64) ([]domain.Event, error)) (Answer[P], error) {
	type answer = Answer[P]
	if err := hubTenant(c.P); err != nil {
		return answer{}, err
	}
	id, err := hubKey(id)
	if err != nil {
		return answer{}, err
	}
	c.Aggregate = "hub/" + id
	return run(ctx, s, c, func(ctx context.Context, tx *store.Tx) (answer, error) {
		st, snap, err := load(ctx, tx, hubAgg, id)
		if err != nil {
			return answer{}, err
		}
		if !st.Exists() {
			return answer{}, domain.Errorf(domain.NotFound, "Hub %s not found", id)
		}
		if err := authorize(st); err != nil {
			return answer{}, err
		}
		evs, err := decide(ctx, tx, st, s.nowMs())
		if err != nil {
			return answer{}, err
		}
		if online && len(evs) > 0 {
			up, err := s.hubOnline(ctx, tx, st.ThingName)
			if err != nil {
				return answer{}, err
			}
			if !up {
				return answer{}, hubOffline(st)
			}
		}
		_, v, ev, err := save(ctx, tx, hubAgg, snap, st, evs, s.stamp())
		return answer{AggregateID: id, Version: v, Event: eventOf[P](ev)}, err
	})
}

// ClaimHubInput is the body of ClaimHub.
type ClaimHubInput struct {
	HubID  string `json:"hubId"`
	OrgID  string `json:"orgId,omitempty"`
	SiteID string `json:"siteId"`
	UserID string `json:"userId"`
}

// ClaimHub binds provisioned hub id to an org's site. A non-super key
// claims into its own org (a different orgId is Forbidden); a super key
// into the orgId it names (a registered org) or its own.
func (s *Service) ClaimHub(ctx context.Context, c Call, id string, in ClaimHubInput) (Answer[hub.HubClaimed], error) {
	if err := sameHub(id, in.HubID); err != nil {
		return Answer[hub.HubClaimed]{}, err
	}
	org := c.P.OrgID
	if in.OrgID != "" && in.OrgID != c.P.OrgID {
		if !c.P.Super && !c.P.Admin && c.P.Kind == TenantCaller {
			return Answer[hub.HubClaimed]{}, domain.Errorf(domain.Forbidden, "An API key may only claim hubs into its own organization (orgId %q is not this key's)", in.OrgID)
		}
		org = in.OrgID
	}
	authorize := func(st hub.State) error {
		if st.OrgID == "" {
			return nil // any tenant key may claim an unclaimed hub
		}
		return authorizeHub(c.P, st)
	}
	return hubCommand[hub.HubClaimed](ctx, s, c, id, true, authorize, func(ctx context.Context, tx *store.Tx, st hub.State, now int64) ([]domain.Event, error) {
		evs, err := hub.DecideClaim(st, hub.Claim{OrgID: org, SiteID: in.SiteID, UserID: in.UserID, Now: now})
		if err != nil {
			return nil, err
		}
		if org != c.P.OrgID {
			if err := registeredOrg(ctx, tx, "orgId", org); err != nil {
				return nil, err
			}
		}
		return evs, nil
	})
}

// ReClaimHubInput is the body of ReClaimHub.
type ReClaimHubInput struct {
	HubID     string `json:"hubId"`
	NewOrgID  string `json:"newOrgId"`
	NewSiteID string `json:"newSiteId"`
	Reason    string `json:"reason"`
	UserID    string `json:"userId"`
}

// ReClaimHub moves claimed hub id to another org (a registered one) and
// site: the hub's org's key or a super key.
func (s *Service) ReClaimHub(ctx context.Context, c Call, id string, in ReClaimHubInput) (Answer[hub.HubReClaimed], error) {
	if err := sameHub(id, in.HubID); err != nil {
		return Answer[hub.HubReClaimed]{}, err
	}
	return hubCommand[hub.HubReClaimed](ctx, s, c, id, true, func(st hub.State) error { return authorizeHub(c.P, st) },
		func(ctx context.Context, tx *store.Tx, st hub.State, now int64) ([]domain.Event, error) {
			evs, err := hub.DecideReClaim(st, hub.ReClaim{NewOrgID: in.NewOrgID, NewSiteID: in.NewSiteID, Reason: in.Reason, UserID: in.UserID, Now: now})
			if err != nil {
				return nil, err
			}
			if in.NewOrgID != st.OrgID {
				if err := registeredOrg(ctx, tx, "newOrgId", in.NewOrgID); err != nil {
					return nil, err
				}
			}
			return evs, nil
		})
}

// SetHubRoleInput is the body of SetHubRole.
type SetHubRoleInput struct {
	HubID     string `json:"hubId"`
	IsPrimary *bool  `json:"isPrimary"`
	UserID    string `json:"userId"`
}

// SetHubRole makes claimed hub id its site's primary or a secondary hub.
// A site has one primary: making hub id primary demotes the site's
// previous primary in the same transaction (a HubRoleSet isPrimary=false
// on that hub's stream; the answer's event is hub id's).
func (s *Service) SetHubRole(ctx context.Context, c Call, id string, in SetHubRoleInput) (Answer[hub.HubRoleSet], error) {
	if err := sameHub(id, in.HubID); err != nil {
		return Answer[hub.HubRoleSet]{}, err
	}
	if in.IsPrimary == nil {
		return Answer[hub.HubRoleSet]{}, domain.InvalidField("isPrimary", "isPrimary is required")
	}
	return hubCommand[hub.HubRoleSet](ctx, s, c, id, true, func(st hub.State) error { return authorizeHub(c.P, st) },
		func(ctx context.Context, tx *store.Tx, st hub.State, now int64) ([]domain.Event, error) {
			evs, err := hub.DecideSetRole(st, hub.SetRole{IsPrimary: *in.IsPrimary, UserID: in.UserID, Now: now})
			if err != nil || len(evs) == 0 || !*in.IsPrimary {
				return evs, err
			}
			return evs, s.demotePrimaries(ctx, tx, st, in.UserID, now)
		})
}

// demotePrimaries appends HubRoleSet isPrimary=false to every other hub
// that is the primary of promoted's site. The candidates are the hub
// snapshots of the site's org (read outside tx, then each loaded in tx, so
// a concurrent change of a candidate conflicts and the command runs
// again).
func (s *Service) demotePrimaries(ctx context.Context, tx *store.Tx, promoted hub.State, userID string, now int64) error {
	snaps, err := s.st.Snapshots(ctx, hub.AggregateType)
	if err != nil {
		return err
	}
	for _, sn := range snaps {
		if sn.OrgID != promoted.OrgID || sn.AggregateID == promoted.HubID {
			continue
		}
		other, osnap, err := load(ctx, tx, hubAgg, sn.AggregateID)
		if err != nil {
			return err
		}
		if evs := hub.DecideDemote(other, promoted.HubID, promoted.OrgID, promoted.SiteID, userID, now); len(evs) > 0 {
			if _, _, _, err := save(ctx, tx, hubAgg, osnap, other, evs, s.stamp()); err != nil {
				return err
			}
		}
	}
	return nil
}

// SuspendHubInput is the body of SuspendHub.
type SuspendHubInput struct {
	HubID  string `json:"hubId"`
	Reason string `json:"reason"`
	UserID string `json:"userId"`
}

// SuspendHub suspends hub id.
func (s *Service) SuspendHub(ctx context.Context, c Call, id string, in SuspendHubInput) (Answer[hub.HubSuspended], error) {
	if err := sameHub(id, in.HubID); err != nil {
		return Answer[hub.HubSuspended]{}, err
	}
	return hubCommand[hub.HubSuspended](ctx, s, c, id, true, func(st hub.State) error { return authorizeHub(c.P, st) },
		func(ctx context.Context, tx *store.Tx, st hub.State, now int64) ([]domain.Event, error) {
			return hub.DecideSuspend(st, hub.Suspend{Reason: in.Reason, UserID: in.UserID, Now: now})
		})
}

// HubCommandAnswer is the answer of SendHubCommand and CommissionDevice:
// the envelope (event always null), the command's requestId (its key in
// the hub shadow's commands) and whether the hub was offline (the command
// then waits for it in the shadow).
type HubCommandAnswer struct {
	Answer[hub.HubProvisioned]
	RequestID string `json:"requestId"`
	Offline   bool   `json:"offline"`
	after     func()
}

// MaxHubArgsBytes bounds the encoded args of a hub command.
const MaxHubArgsBytes = 16 << 10

// SendHubCommandInput is the body of SendHubCommand.
type SendHubCommandInput struct {
	HubID   string         `json:"hubId"`
	Command string         `json:"command"`
	Args    map[string]any `json:"args,omitempty"`
}

// SendHubCommand writes {command, args} verbatim into the desired state
// of hub id's shadow (hubShadowCommand).
func (s *Service) SendHubCommand(ctx context.Context, c Call, id string, in SendHubCommandInput) (HubCommandAnswer, error) {
	if err := sameHub(id, in.HubID); err != nil {
		return HubCommandAnswer{}, err
	}
	if err := hub.CheckCommand(in.Command); err != nil {
		return HubCommandAnswer{}, err
	}
	return s.hubShadowCommand(ctx, c, id, in.Command, in.Args)
}

// CommissionDeviceInput is the body of CommissionDevice.
type CommissionDeviceInput struct {
	HubID             string `json:"hubId"`
	CommissioningCode string `json:"commissioningCode"`
}

// CommissionDevice asks hub id to commission a Matter device: the hub
// command commission_with_code with args {"code": commissioningCode}.
func (s *Service) CommissionDevice(ctx context.Context, c Call, id string, in CommissionDeviceInput) (HubCommandAnswer, error) {
	if err := sameHub(id, in.HubID); err != nil {
		return HubCommandAnswer{}, err
	}
	if err := hub.CheckCommissioningCode(in.CommissioningCode); err != nil {
		return HubCommandAnswer{}, err
	}
	return s.hubShadowCommand(ctx, c, id, hub.CommandCommission, map[string]any{"code": in.CommissioningCode})
}

// hubShadowCommand merges desired {"commands": {requestId: {command, args,
// at}}} into the classic shadow of hub id's thing inside the command's
// transaction (deviceCommand's way): when the shadow refuses, 502 and
// nothing is recorded. The hub reports {"commands": {requestId: {result,
// error?, output?}}}. No event is recorded.
func (s *Service) hubShadowCommand(ctx context.Context, c Call, id, command string, args map[string]any) (HubCommandAnswer, error) {
	if err := hubTenant(c.P); err != nil {
		return HubCommandAnswer{}, err
	}
	id, err := hubKey(id)
	if err != nil {
		return HubCommandAnswer{}, err
	}
	if s.devices == nil {
		return HubCommandAnswer{}, domain.Errorf(domain.Unavailable, "This server has no device gateway")
	}
	if args == nil {
		args = map[string]any{}
	}
	requestID := s.newUUID()
	c.Aggregate = "hub/" + id
	res, err := run(ctx, s, c, func(ctx context.Context, tx *store.Tx) (HubCommandAnswer, error) {
		var res HubCommandAnswer
		st, snap, err := load(ctx, tx, hubAgg, id)
		if err != nil {
			return res, err
		}
		if !st.Exists() {
			return res, domain.Errorf(domain.NotFound, "Hub %s not found", id)
		}
		if err := authorizeHub(c.P, st); err != nil {
			return res, err
		}
		if st.Status == hub.StatusSuspended || st.Status == hub.StatusDecommissioned {
			return res, domain.Errorf(domain.Invalid, "Hub %s is %s: it takes no commands", id, st.Status)
		}
		at := s.now().Unix()
		desired, err := json.Marshal(map[string]any{"commands": map[string]any{requestID: map[string]any{"command": command, "args": args, "at": at}}})
		if err != nil {
			return res, domain.InvalidField("args", "args must be JSON")
		}
		if len(desired) > MaxHubArgsBytes {
			return res, domain.InvalidField("args", fmt.Sprintf("command and args must encode to at most %d bytes", MaxHubArgsBytes))
		}
		online, err := s.hubOnline(ctx, tx, st.ThingName)
		if err != nil {
			return res, err
		}
		after, err := s.devices.UpdateDesired(ctx, tx, st.ThingName, "", desired, requestID, at)
		if err != nil {
			var se *shadow.Error
			if errors.As(err, &se) {
				return res, domain.Errorf(domain.BadGateway, "The shadow of hub %s refused the command (%d: %s); nothing was recorded", id, se.Code, se.Message)
			}
			return res, err
		}
		res.AggregateID, res.Version, res.RequestID, res.Offline, res.after = id, snap.Version, requestID, !online, after
		return res, nil
	})
	if err == nil && res.after != nil {
		res.after()
	}
	return res, err
}

// HubStatusView is GET /hubs/{id}/status: the hub record, its presence
// and what its shadow reports.
type HubStatusView struct {
	State  hub.State
	Online bool
	// LastSeen is when the hub last connected or disconnected, in epoch
	// ms; 0: never seen.
	LastSeen int64
	// Version and UptimeSeconds are the hub's reported "version" (a
	// string) and "uptimeSeconds" (a number); nil when not reported.
	Version       *string
	UptimeSeconds *float64
}

// HubStatus returns hub id for an authorized caller (authorizeHub). It
// returns NotFound, Unauthorized or Forbidden.
func (s *Service) HubStatus(ctx context.Context, p Principal, id string) (HubStatusView, error) {
	var v HubStatusView
	if err := hubTenant(p); err != nil {
		return v, err
	}
	id, err := hubKey(id)
	if err != nil {
		return v, err
	}
	st, _, found, err := read(ctx, s.st, hubAgg, id)
	if err != nil {
		return v, err
	}
	if !found || !st.Exists() {
		return v, domain.Errorf(domain.NotFound, "Hub %s not found", id)
	}
	if err := authorizeHub(p, st); err != nil {
		return v, err
	}
	v.State = st
	pr, found, err := s.st.Presence(ctx, st.ThingName)
	if err != nil {
		return v, err
	}
	if found {
		v.Online = pr.Online
		if t, err := time.Parse(time.RFC3339Nano, pr.LastSeen); err == nil {
			v.LastSeen = t.UnixMilli()
		}
	}
	if s.devices != nil && s.devices.Online(st.ThingName) {
		v.Online = true
	}
	doc, found, err := s.st.Shadow(ctx, st.ThingName, "")
	if err != nil || !found {
		return v, err
	}
	d, err := shadow.Unmarshal(doc)
	if err != nil || !d.Exists {
		return v, nil // an unreadable or deleted shadow reports nothing
	}
	if ver, ok := d.Reported["version"].(string); ok {
		v.Version = &ver
	}
	if up, ok := jsonNumber(d.Reported["uptimeSeconds"]); ok {
		v.UptimeSeconds = &up
	}
	return v, nil
}

// authorizeHubDevice: a hub's device credentials are its org's (its API
// key) or a super key's; an unclaimed hub's only a super key's (the
// factory's); never a user's.
func (s *Service) authorizeHubDevice(ctx context.Context, p Principal, id string) (hub.State, error) {
	if err := requireAuth(p); err != nil {
		return hub.State{}, err
	}
	if !p.Admin && p.Kind != TenantCaller {
		return hub.State{}, domain.Errorf(domain.Forbidden, "Device credentials are issued to the hub's organization (its X-API-Key) or a super key, not to users")
	}
	id, err := hubKey(id)
	if err != nil {
		return hub.State{}, err
	}
	st, _, found, err := read(ctx, s.st, hubAgg, id)
	if err != nil {
		return st, err
	}
	if !found || !st.Exists() {
		return st, domain.Errorf(domain.NotFound, "Hub %s not found", id)
	}
	return st, authorizeHub(p, st)
}

// IssueHubDeviceCredentials issues a credential for hub id's thing (its
// thingName, also its MQTT client id), as IssueDeviceCredentials does for
// a lock.
func (s *Service) IssueHubDeviceCredentials(ctx context.Context, p Principal, id string, in DeviceCredentialsInput) (DeviceCredentials, error) {
	if err := checkCredentialsInput(in); err != nil {
		return DeviceCredentials{}, err
	}
	st, err := s.authorizeHubDevice(ctx, p, id)
	if err != nil {
		return DeviceCredentials{}, err
	}
	return s.issueThingCredentials(ctx, st.ThingName, in)
}

// RevokeHubDeviceCredentials revokes every credential of hub id's thing
// and cuts its open session on this node.
func (s *Service) RevokeHubDeviceCredentials(ctx context.Context, p Principal, id string) (string, error) {
	st, err := s.authorizeHubDevice(ctx, p, id)
	if err != nil {
		return "", err
	}
	return st.ThingName, s.revokeThing(ctx, st.ThingName)
}

// jsonNumber reads a number of a decoded shadow document, whichever Go
// type the decoder gave it.
func jsonNumber(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int64:
		return float64(n), true
	case int:
		return float64(n), true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}
