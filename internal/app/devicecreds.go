package app

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/spkey-dev/spkey/internal/devices/ca"
	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/lock"
)

// DeviceIssuer issues and revokes the MQTT credentials of a thing;
// *creds.Issuer implements it.
type DeviceIssuer interface {
	IssuePassword(ctx context.Context, thing string, now time.Time) (username, password string, err error)
	IssueCertificate(ctx context.Context, thing string, now time.Time, validity time.Duration) (certPEM, keyPEM []byte, err error)
	SignCSR(ctx context.Context, thing string, csrPEM []byte, now time.Time, validity time.Duration) (certPEM []byte, err error)
	Revoke(ctx context.Context, thing string, now time.Time) error
}

// DeviceAccess is the node's device layer as the credential routes need
// it: the issuer, the device CA's certificate (for a device to trust the
// broker) and the broker's endpoints ("" for a listener that is off).
type DeviceAccess struct {
	Issuer        DeviceIssuer
	CACertPEM     []byte
	MQTTEndpoint  string
	MQTTSEndpoint string
	// Disconnect, when set, closes the thing's open connection on this
	// node's broker (a revoke cuts it).
	Disconnect func(thing string) bool
}

// deviceSlot holds the node's DeviceAccess, set once the device layer has
// started (it starts after the Service is built).
type deviceSlot struct{ atomic.Pointer[DeviceAccess] }

// SetDeviceAccess makes d the node's device layer for IssueDeviceCredentials
// and RevokeDeviceCredentials; nil: the node has none (they answer
// ErrNoDevices).
func (s *Service) SetDeviceAccess(d *DeviceAccess) { s.deviceCreds.Store(d) }

// ErrNoDevices is returned by the device credential calls on a node that
// runs no device layer (both MQTT listeners off).
// It is an Unavailable domain error: the API answers 503.
var ErrNoDevices = domain.Errorf(domain.Unavailable, "this node runs no device broker (spkey serve --mqtt-addr / --mqtts-addr are off): device credentials cannot be issued here")

// DeviceCertValidity is how long a client certificate issued through the
// API is valid (the CA's own end bounds it), as `spkey device credentials`.
const DeviceCertValidity = 10 * 365 * 24 * time.Hour

// maxCSRBytes bounds a certificate signing request.
const maxCSRBytes = 16 << 10

// The kinds of device credentials.
const (
	CredentialPassword    = "password"
	CredentialCertificate = "certificate"
)

// DeviceCredentialsInput asks for one credential of a lock's device: a
// password, or a certificate (for CSR's key when set, else with a new key).
type DeviceCredentialsInput struct {
	Kind string
	CSR  string
}

// DeviceCredentials are a newly issued credential, shown once.
type DeviceCredentials struct {
	ThingName string
	// Username and Password: a password credential.
	Username, Password string
	// CertificatePEM, PrivateKeyPEM (empty for a CSR) and CACertPEM: a
	// certificate credential.
	CertificatePEM, PrivateKeyPEM, CACertPEM string
	// MQTTEndpoint (password) or MQTTSEndpoint (certificate): where to
	// connect, "" when unknown.
	MQTTEndpoint, MQTTSEndpoint string
}

// authorizeDevice: a lock's device credentials are the tenant's (the
// lock's organization, through its API key, or a super key) or the
// admin's; never a user's, not even the owner's. It returns Unauthorized,
// Forbidden or NotFound, and the store's errors.
func (s *Service) authorizeDevice(ctx context.Context, p Principal, id int64) error {
	if err := requireAuth(p); err != nil {
		return err
	}
	if !p.Admin && p.Kind != TenantCaller {
		return domain.Errorf(domain.Forbidden, "Device credentials are issued to the lock's organization (its X-API-Key) or the admin, not to users")
	}
	v, found, err := s.readLock(ctx, id)
	if err != nil {
		return err
	}
	if !found {
		return domain.Errorf(domain.NotFound, "Lock %d not found", id)
	}
	if p.Admin {
		return nil
	}
	return authorizeLock(p, v.State)
}

// IssueDeviceCredentials issues a credential for lock id's device (thing
// lock-{id}) to an authorized caller (authorizeDevice). Earlier
// credentials stay valid. It returns Invalid for an unknown kind or a bad
// CSR (or one with kind password), Unauthorized, Forbidden, NotFound,
// ErrNoDevices, and the issuer's other errors, wrapped.
func (s *Service) IssueDeviceCredentials(ctx context.Context, p Principal, id int64, in DeviceCredentialsInput) (DeviceCredentials, error) {
	if err := checkCredentialsInput(in); err != nil {
		return DeviceCredentials{}, err
	}
	if err := s.authorizeDevice(ctx, p, id); err != nil {
		return DeviceCredentials{}, err
	}
	return s.issueThingCredentials(ctx, lock.ThingName(id), in)
}

// checkCredentialsInput returns Invalid for an unknown kind or a bad CSR
// (or one with kind password).
func checkCredentialsInput(in DeviceCredentialsInput) error {
	switch {
	case in.Kind != CredentialPassword && in.Kind != CredentialCertificate:
		return domain.InvalidField("kind", `kind must be "password" or "certificate"`)
	case in.CSR != "" && in.Kind != CredentialCertificate:
		return domain.InvalidField("csr", `csr goes with kind "certificate" only`)
	case len(in.CSR) > maxCSRBytes:
		return domain.InvalidField("csr", fmt.Sprintf("csr must be at most %d bytes", maxCSRBytes))
	}
	return nil
}

// issueThingCredentials issues a credential (in, checked) for thing. It
// returns ErrNoDevices, Invalid for a bad CSR, and the issuer's errors.
func (s *Service) issueThingCredentials(ctx context.Context, thing string, in DeviceCredentialsInput) (DeviceCredentials, error) {
	var out DeviceCredentials
	d := s.deviceCreds.Load()
	if d == nil {
		return out, ErrNoDevices
	}
	now := s.now()
	out.ThingName = thing
	if in.Kind == CredentialPassword {
		user, password, err := d.Issuer.IssuePassword(ctx, thing, now)
		if err != nil {
			return DeviceCredentials{}, err
		}
		out.Username, out.Password, out.MQTTEndpoint = user, password, d.MQTTEndpoint
		return out, nil
	}
	var cert, key []byte
	var err error
	if in.CSR != "" {
		cert, err = d.Issuer.SignCSR(ctx, thing, []byte(in.CSR), now, DeviceCertValidity)
	} else {
		cert, key, err = d.Issuer.IssueCertificate(ctx, thing, now, DeviceCertValidity)
	}
	if errors.Is(err, ca.ErrInvalidCSR) {
		return DeviceCredentials{}, domain.InvalidField("csr", "csr is not a valid PEM certificate signing request (-----BEGIN CERTIFICATE REQUEST-----) with a valid signature")
	}
	if err != nil {
		return DeviceCredentials{}, err
	}
	out.CertificatePEM, out.PrivateKeyPEM, out.CACertPEM, out.MQTTSEndpoint = string(cert), string(key), string(d.CACertPEM), d.MQTTSEndpoint
	return out, nil
}

// RevokeDeviceCredentials revokes every credential of lock id's device
// for an authorized caller (authorizeDevice): its new connections are
// refused from now on. It returns the thing name, Unauthorized,
// Forbidden, NotFound, ErrNoDevices, and the issuer's errors.
func (s *Service) RevokeDeviceCredentials(ctx context.Context, p Principal, id int64) (string, error) {
	if err := s.authorizeDevice(ctx, p, id); err != nil {
		return "", err
	}
	thing := lock.ThingName(id)
	return thing, s.revokeThing(ctx, thing)
}

// revokeThing revokes every credential of thing and cuts its open session
// on this node. It returns ErrNoDevices and the issuer's errors.
func (s *Service) revokeThing(ctx context.Context, thing string) error {
	d := s.deviceCreds.Load()
	if d == nil {
		return ErrNoDevices
	}
	if err := d.Issuer.Revoke(ctx, thing, s.now()); err != nil {
		return err
	}
	if d.Disconnect != nil {
		// Its new logins are refused; its open session ends now.
		d.Disconnect(thing)
	}
	return nil
}
