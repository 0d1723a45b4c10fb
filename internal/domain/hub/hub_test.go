package hub_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/hub"
)

const (
	hubID = "3f2a1b0c-9d8e-4f7a-8b6c-5d4e3f2a1b0c"
	user  = "8d0f6e52-3b1a-4c9d-9e7f-0a1b2c3d4e5f"
	now   = int64(1767323045678)
)

func fold(evs ...domain.Event) hub.State {
	var s hub.State
	for _, e := range evs {
		s = hub.Apply(s, e)
	}
	return s
}

var (
	provisioned = hub.HubProvisioned{HubID: hubID, Serial: "SN-1", Model: "H1", ThingName: hubID, ProvisionedAt: 1}
	claimed     = hub.HubClaimed{HubID: hubID, OrgID: "acme", SiteID: "site-1", ClaimedBy: user, ClaimedAt: 2}
	suspended   = hub.HubSuspended{HubID: hubID, Reason: "r", SuspendedBy: user, SuspendedAt: 3}
)

func TestDecide(t *testing.T) {
	p := fold(provisioned)
	c := fold(provisioned, claimed)
	primary := fold(provisioned, claimed, hub.HubRoleSet{HubID: hubID, IsPrimary: true, SetBy: user, SetAt: 3})
	s := fold(provisioned, claimed, suspended)
	cases := []struct {
		name string
		run  func() ([]domain.Event, error)
		want []domain.Event
		code domain.Code
	}{
		{"provision new", func() ([]domain.Event, error) {
			return hub.DecideProvision(hub.State{}, hub.Provision{HubID: hubID, Serial: "SN-1", Model: "H1", Now: now})
		}, []domain.Event{hub.HubProvisioned{HubID: hubID, Serial: "SN-1", Model: "H1", ThingName: hubID, ProvisionedAt: now}}, ""},
		{"provision thingName vendor", func() ([]domain.Event, error) {
			return hub.DecideProvision(hub.State{}, hub.Provision{HubID: hubID, Serial: "SN-1", Model: "H1", ThingName: "hub-x", VendorName: "V", Now: now})
		}, []domain.Event{hub.HubProvisioned{HubID: hubID, Serial: "SN-1", Model: "H1", ThingName: "hub-x", VendorName: "V", ProvisionedAt: now}}, ""},
		{"provision again", func() ([]domain.Event, error) {
			return hub.DecideProvision(p, hub.Provision{HubID: hubID, Serial: "SN-2", Model: "H2", Now: now})
		}, nil, ""},
		{"provision bad uuid", func() ([]domain.Event, error) {
			return hub.DecideProvision(hub.State{}, hub.Provision{HubID: "hub-1", Serial: "SN-1", Model: "H1"})
		}, nil, domain.Invalid},
		{"provision upper-case uuid", func() ([]domain.Event, error) {
			return hub.DecideProvision(hub.State{}, hub.Provision{HubID: strings.ToUpper(hubID), Serial: "SN-1", Model: "H1"})
		}, nil, domain.Invalid},
		{"provision no serial", func() ([]domain.Event, error) {
			return hub.DecideProvision(hub.State{}, hub.Provision{HubID: hubID, Model: "H1"})
		}, nil, domain.Invalid},
		{"provision no model", func() ([]domain.Event, error) {
			return hub.DecideProvision(hub.State{}, hub.Provision{HubID: hubID, Serial: "S"})
		}, nil, domain.Invalid},
		{"provision bad thingName", func() ([]domain.Event, error) {
			return hub.DecideProvision(hub.State{}, hub.Provision{HubID: hubID, Serial: "S", Model: "M", ThingName: "a/#"})
		}, nil, domain.Invalid},
		{"claim", func() ([]domain.Event, error) {
			return hub.DecideClaim(p, hub.Claim{OrgID: "acme", SiteID: "site-1", UserID: user, Now: now})
		}, []domain.Event{hub.HubClaimed{HubID: hubID, OrgID: "acme", SiteID: "site-1", ClaimedBy: user, ClaimedAt: now}}, ""},
		{"claim missing", func() ([]domain.Event, error) {
			return hub.DecideClaim(hub.State{}, hub.Claim{OrgID: "acme", SiteID: "s", UserID: user})
		}, nil, domain.NotFound},
		{"claim claimed", func() ([]domain.Event, error) {
			return hub.DecideClaim(c, hub.Claim{OrgID: "acme", SiteID: "s", UserID: user})
		}, nil, domain.Invalid},
		{"claim suspended", func() ([]domain.Event, error) {
			return hub.DecideClaim(fold(provisioned, suspended), hub.Claim{OrgID: "acme", SiteID: "s", UserID: user})
		}, nil, domain.Invalid},
		{"claim no site", func() ([]domain.Event, error) {
			return hub.DecideClaim(p, hub.Claim{OrgID: "acme", UserID: user})
		}, nil, domain.Invalid},
		{"reclaim", func() ([]domain.Event, error) {
			return hub.DecideReClaim(c, hub.ReClaim{NewOrgID: "beta", NewSiteID: "site-2", Reason: "moved", UserID: user, Now: now})
		}, []domain.Event{hub.HubReClaimed{HubID: hubID, PreviousOrgID: "acme", PreviousSiteID: "site-1", NewOrgID: "beta", NewSiteID: "site-2",
			ReclaimedBy: user, Reason: "moved", ReclaimedAt: now}}, ""},
		{"reclaim no reason", func() ([]domain.Event, error) {
			return hub.DecideReClaim(c, hub.ReClaim{NewOrgID: "beta", NewSiteID: "site-2", UserID: user})
		}, nil, domain.Invalid},
		{"reclaim unclaimed", func() ([]domain.Event, error) {
			return hub.DecideReClaim(p, hub.ReClaim{NewOrgID: "beta", NewSiteID: "site-2", Reason: "x", UserID: user})
		}, nil, domain.Invalid},
		{"role primary", func() ([]domain.Event, error) {
			return hub.DecideSetRole(c, hub.SetRole{IsPrimary: true, UserID: user, Now: now})
		}, []domain.Event{hub.HubRoleSet{HubID: hubID, IsPrimary: true, SetBy: user, SetAt: now}}, ""},
		{"role same", func() ([]domain.Event, error) {
			return hub.DecideSetRole(primary, hub.SetRole{IsPrimary: true, UserID: user, Now: now})
		}, nil, ""},
		{"role unclaimed", func() ([]domain.Event, error) {
			return hub.DecideSetRole(p, hub.SetRole{IsPrimary: true, UserID: user})
		}, nil, domain.Invalid},
		{"role bad user", func() ([]domain.Event, error) {
			return hub.DecideSetRole(c, hub.SetRole{IsPrimary: true, UserID: "bob"})
		}, nil, domain.Invalid},
		{"suspend", func() ([]domain.Event, error) {
			return hub.DecideSuspend(c, hub.Suspend{Reason: "theft", UserID: user, Now: now})
		}, []domain.Event{hub.HubSuspended{HubID: hubID, Reason: "theft", SuspendedBy: user, SuspendedAt: now}}, ""},
		{"suspend twice", func() ([]domain.Event, error) {
			return hub.DecideSuspend(s, hub.Suspend{Reason: "theft", UserID: user})
		}, nil, domain.Invalid},
		{"suspend no reason", func() ([]domain.Event, error) {
			return hub.DecideSuspend(c, hub.Suspend{UserID: user})
		}, nil, domain.Invalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.run()
			if tc.code != "" {
				if domain.ErrorCode(err) != tc.code {
					t.Fatalf("err %v, want code %s", err, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Error(diff)
			}
		})
	}
}

func TestApplyAndDemote(t *testing.T) {
	primary := fold(provisioned, claimed, hub.HubRoleSet{HubID: hubID, IsPrimary: true, SetBy: user, SetAt: 3})
	if !primary.IsPrimary || primary.Status != hub.StatusClaimed || primary.ClaimedAt != 2 {
		t.Fatalf("state %+v", primary)
	}
	other := "0a0a0a0a-0000-4000-8000-000000000001"
	if got := hub.DecideDemote(primary, other, "acme", "site-1", user, now); len(got) != 1 || got[0].(hub.HubRoleSet).IsPrimary {
		t.Fatalf("demote: %v", got)
	}
	for _, tc := range []struct{ promoted, org, site string }{{hubID, "acme", "site-1"}, {other, "acme", "site-2"}, {other, "beta", "site-1"}} {
		if got := hub.DecideDemote(primary, tc.promoted, tc.org, tc.site, user, now); got != nil {
			t.Errorf("demote %v: %v, want nothing", tc, got)
		}
	}
	moved := hub.Apply(primary, hub.HubReClaimed{HubID: hubID, NewOrgID: "beta", NewSiteID: "s2", ReclaimedAt: 9})
	if moved.IsPrimary || moved.OrgID != "beta" || moved.SiteID != "s2" {
		t.Fatalf("after reclaim %+v", moved)
	}
	for _, code := range []string{"12345678901", "123456789012345678901", "MT:Y.K9042C00KA0648G00"} {
		if err := hub.CheckCommissioningCode(code); err != nil {
			t.Errorf("%s: %v", code, err)
		}
	}
	for _, code := range []string{"", "1234567890", "1234567890123456789012", "mt:abc", "MT:", "12345678901\n"} {
		if hub.CheckCommissioningCode(code) == nil {
			t.Errorf("%q accepted", code)
		}
	}
}
