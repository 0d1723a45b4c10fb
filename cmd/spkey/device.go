package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spkey-dev/spkey/internal/cmdline"
	"github.com/spkey-dev/spkey/internal/devices/ca"
	"github.com/spkey-dev/spkey/internal/devices/creds"
	"github.com/spkey-dev/spkey/internal/devices/mqttclient"
	"github.com/spkey-dev/spkey/internal/domain"
	"github.com/spkey-dev/spkey/internal/domain/lock"
	"github.com/spkey-dev/spkey/internal/server"
)

// deviceFlags are the settings of `spkey device credentials`: the
// store's, the CA's folder, and the listeners it prints (`device revoke`
// takes the store's only).
var deviceFlags = append([]string{"device-ca-dir", "mqtt-addr", "mqtts-addr"}, storeFlags...)

const (
	deviceCredentialsUsage = "device credentials lock LOCK_ID --out DIR [--csr FILE] [flags]"
	deviceRevokeUsage      = "device revoke lock LOCK_ID [flags]"
)

// clientCertValidity is how long an issued client certificate is valid
// (the CA's own end bounds it).
const clientCertValidity = 10 * 365 * 24 * time.Hour

// The files `device credentials` writes into --out.
const (
	certFile     = "certificate.pem"
	keyFile      = "private.key"
	caFile       = "ca.pem"
	passwordFile = "password"
)

// hostList is --mqtt-host: repeated or a comma list; the first value
// given replaces the default.
type hostList struct {
	hosts []string
	set   bool
}

func (h *hostList) String() string {
	if h == nil {
		return ""
	}
	return strings.Join(h.hosts, ",")
}

func (h *hostList) Set(v string) error {
	if !h.set {
		h.hosts, h.set = nil, true
	}
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			h.hosts = append(h.hosts, s)
		}
	}
	return nil
}

// listenerOff reports whether a listener setting disables it.
func listenerOff(addr string) bool { return addr == "" || strings.EqualFold(addr, "off") }

// devices is the node's device layer from the settings. It returns an
// error naming the setting that is wrong: a listener that is neither
// host:port nor off, no CA folder on PostgreSQL with a listener on.
func (c *config) devices() (server.DevicesConfig, error) {
	var d server.DevicesConfig
	if c.MQTTURL != "" {
		return c.externalBroker()
	}
	for _, l := range []struct {
		flag, addr string
		to         *string
	}{{"--mqtt-addr", c.MQTTAddr, &d.MQTTAddr}, {"--mqtts-addr", c.MQTTSAddr, &d.MQTTSAddr}} {
		if listenerOff(l.addr) {
			continue
		}
		if _, _, err := net.SplitHostPort(l.addr); err != nil {
			return d, fmt.Errorf("%s must be host:port (e.g. 127.0.0.1:1884), or off: %v", l.flag, err)
		}
		*l.to = l.addr
	}
	if !d.On() {
		return d, nil
	}
	dir, err := c.caDir()
	if err != nil {
		return d, err
	}
	if len(c.MQTTHosts.hosts) == 0 {
		return d, fmt.Errorf("--mqtt-host must name at least one host")
	}
	if (c.MQTTTLSCert == "") != (c.MQTTTLSKey == "") {
		return d, fmt.Errorf("--mqtt-tls-cert and --mqtt-tls-key go together")
	}
	d.CADir, d.Hosts, d.TLSCertFile, d.TLSKeyFile = dir, c.MQTTHosts.hosts, c.MQTTTLSCert, c.MQTTTLSKey
	return d, nil
}

// externalBroker is the device layer on the --mqtt-url broker. The
// embedded listeners are off unless given, and then it is an error.
func (c *config) externalBroker() (server.DevicesConfig, error) {
	for _, l := range []struct{ flag, addr string }{{"mqtt-addr", c.MQTTAddr}, {"mqtts-addr", c.MQTTSAddr}} {
		if from := c.from[l.flag]; from != "" && !listenerOff(l.addr) {
			return server.DevicesConfig{}, fmt.Errorf("--mqtt-url excludes the embedded broker: drop %s (or set it to off)", from)
		}
	}
	if _, _, _, _, err := mqttclient.ParseURL(c.MQTTURL); err != nil {
		return server.DevicesConfig{}, fmt.Errorf("--mqtt-url: %w", err)
	}
	mc := mqttclient.Config{ClientID: c.MQTTClientID, ShareGroup: c.MQTTShareGroup, CAFile: c.MQTTCAFile}
	if strings.EqualFold(c.MQTTShareGroup, "off") {
		mc.ShareGroup, mc.NoShare = "", true
	}
	return server.DevicesConfig{MQTTURL: c.MQTTURL, MQTTClient: mc}, nil
}

// caDir is the device CA's folder: --device-ca-dir, else the data folder
// on SQLite; on PostgreSQL without --device-ca-dir, "": the CA is kept in
// the database, shared by every node (server.LoadDeviceCA).
func (c *config) caDir() (string, error) {
	switch {
	case c.DeviceCADir != "":
		return c.DeviceCADir, nil
	case c.DB == "":
		return c.Data, nil
	}
	return "", nil
}

// deviceEndpoints describes where devices connect, for people: the
// external broker, or the embedded broker's listeners plain and tls.
func (c *config) deviceEndpoints(plain, tls string) string {
	if c.MQTTURL != "" {
		return "external broker " + mqttclient.Redacted(c.MQTTURL) + " (its ACL must confine each device to $aws/things/<client id>/#)"
	}
	return endpoints(plain, tls)
}

// endpoints describes the broker's listeners for people.
func endpoints(plain, tls string) string {
	if plain == "" {
		plain = "off"
	}
	if tls == "" {
		tls = "off"
	}
	return fmt.Sprintf("mqtt %s (username + password), mqtts %s (client certificate)", plain, tls)
}

// cmdDevice is `spkey device credentials|revoke lock LOCK_ID`.
func cmdDevice(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	usage := fmt.Sprintf("usage: spkey %s\n       spkey %s", deviceCredentialsUsage, deviceRevokeUsage)
	if len(args) == 0 {
		return errors.New(usage)
	}
	var out, csr string
	cmd := command{flags: storeFlags, args: 2}
	switch args[0] {
	case "credentials":
		cmd.name, cmd.usage, cmd.flags = "device credentials", deviceCredentialsUsage, deviceFlags
		cmd.extra = func(fs *flag.FlagSet) {
			fs.StringVar(&out, "out", "", "folder to write the credentials into (required; created if missing, must not hold them already)")
			fs.StringVar(&csr, "csr", "", "a PEM certificate signing request of the device: sign it instead of making a key")
		}
	case "revoke":
		cmd.name, cmd.usage = "device revoke", deviceRevokeUsage
	case "-h", "-help", "--help":
		fmt.Fprintln(stdout, usage)
		return flag.ErrHelp
	default:
		return errors.New(usage)
	}
	c, pos, err := parse(cmd, args[1:], cmdline.Env(environ), stdout, stderr)
	if err != nil {
		return err
	}
	if pos[0] != "lock" {
		return fmt.Errorf("%s: only locks have credentials: want \"lock\", got %q (usage: spkey %s)", cmd.name, pos[0], cmd.usage)
	}
	id, err := domain.ParseID("lock id", pos[1])
	if err != nil {
		return fmt.Errorf("%s: %w", cmd.name, err)
	}
	thing := lock.ThingName(id)
	var caDir string
	if args[0] == "credentials" {
		if out == "" {
			return fmt.Errorf("%s: --out DIR is required", cmd.name)
		}
		if caDir, err = c.caDir(); err != nil {
			return err
		}
	}
	st, err := c.openStore(ctx, c.logger(stderr))
	if err != nil {
		return err
	}
	defer st.Close()
	if args[0] == "revoke" {
		if err := creds.NewIssuer(st, nil).Revoke(ctx, thing, time.Now()); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked every credential of %s: its new connections are refused\n", thing)
		return nil
	}
	if _, found, err := st.Snapshot(ctx, lock.AggregateType, strconv.FormatInt(id, 10)); err != nil {
		return fmt.Errorf("load lock %d: %w", id, err)
	} else if !found {
		return fmt.Errorf("%s: lock %d does not exist (create it first: POST /locks/%d/CreateLock)", cmd.name, id, id)
	}
	authority, err := server.LoadDeviceCA(ctx, st, caDir, time.Now())
	if err != nil {
		return err
	}
	if err := writeCredentials(ctx, creds.NewIssuer(st, authority), authority, thing, out, csr); err != nil {
		return err
	}
	fmt.Fprintf(stdout, `thing:     %s
username:  %s
password:  %s
files:     %s
endpoints: %s
`, thing, thing, filepath.Join(out, passwordFile), out, endpoints(liveAddr(c.MQTTAddr), liveAddr(c.MQTTSAddr)))
	return nil
}

// liveAddr is a listener setting as endpoints shows it.
func liveAddr(addr string) string {
	if listenerOff(addr) {
		return ""
	}
	return addr
}

// writeCredentials issues thing's client certificate (for csrFile's
// request if set, else with a new key) and a password, and writes them
// with the CA's certificate into dir. It refuses a dir that already holds
// one of the files, before issuing anything.
func writeCredentials(ctx context.Context, issuer *creds.Issuer, authority *ca.CA, thing, dir, csrFile string) error {
	for _, name := range []string{certFile, keyFile, caFile, passwordFile} {
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
			return fmt.Errorf("--out %s already holds %s: choose an empty folder (the credentials in it stay valid until `spkey device revoke`)", dir, name)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("--out: %w", err)
		}
	}
	var csrPEM []byte
	if csrFile != "" {
		var err error
		if csrPEM, err = os.ReadFile(csrFile); err != nil {
			return fmt.Errorf("--csr: %w", err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	caPEM, _, err := authority.PEM()
	if err != nil {
		return err
	}
	now := time.Now()
	var certPEM, keyPEM []byte
	if csrPEM != nil {
		certPEM, err = issuer.SignCSR(ctx, thing, csrPEM, now, clientCertValidity)
	} else {
		certPEM, keyPEM, err = issuer.IssueCertificate(ctx, thing, now, clientCertValidity)
	}
	if err != nil {
		return err
	}
	_, password, err := issuer.IssuePassword(ctx, thing, now)
	if err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{{caFile, caPEM, 0o644}, {certFile, certPEM, 0o644}, {keyFile, keyPEM, 0o600}, {passwordFile, []byte(password), 0o600}}
	for _, f := range files {
		if f.data == nil {
			continue
		}
		if err := writeNew(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// writeNew writes data into a new file with mode (never an existing one).
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("write credentials: %w", err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
