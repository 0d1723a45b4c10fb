// Package mosquittotest runs a real Mosquitto broker (/usr/sbin/mosquitto)
// for tests: on a free loopback port, with its configuration, password
// and ACL files in the test's temporary folder. A test whose machine has
// no mosquitto is skipped.
package mosquittotest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Binary is the broker the tests run.
const Binary = "/usr/sbin/mosquitto"

// startLimit bounds the wait for the broker to accept connections.
const startLimit = 10 * time.Second

// Options configure the broker. The zero Options is an anonymous broker.
type Options struct {
	// Users are the logins (name to password); with any, anonymous
	// clients are refused.
	Users map[string]string
	// ACL is the text of an ACL file (e.g. "pattern readwrite
	// $aws/things/%c/#"); "": none (everyone may do everything).
	ACL string
	// CertFile and KeyFile, both PEM, make the listener MQTT over TLS
	// with that server certificate (no client certificates).
	CertFile, KeyFile string
}

// Broker is one running Mosquitto.
type Broker struct {
	// Addr is its listener, 127.0.0.1:PORT.
	Addr string
	// TLS is whether the listener speaks TLS (Options.CertFile).
	TLS bool

	t    testing.TB
	dir  string
	conf string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	runs int
}

// Start starts Mosquitto on a free port and waits until it accepts
// connections; t's cleanup stops it. Without the binary, it skips t.
func Start(t testing.TB, opt Options) *Broker {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		t.Skipf("mosquitto not installed (%s: %v): apt-get install mosquitto to run this test", Binary, err)
	}
	dir := t.TempDir()
	b := &Broker{t: t, dir: dir, conf: filepath.Join(dir, "mosquitto.conf"), TLS: opt.CertFile != ""}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("mosquittotest: free port: %v", err)
		}
		b.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if err := b.writeConfig(port, opt); err != nil {
			t.Fatalf("mosquittotest: %v", err)
		}
		if lastErr = b.start(); lastErr == nil {
			t.Cleanup(b.Stop)
			return b
		}
	}
	t.Fatalf("mosquittotest: %v", lastErr)
	return nil
}

// URL is the broker's mqtt:// (mqtts:// with TLS) URL, with
// user:password when user is not "".
func (b *Broker) URL(user, password string) string {
	scheme := "mqtt"
	if b.TLS {
		scheme = "mqtts"
	}
	if user == "" {
		return scheme + "://" + b.Addr
	}
	return fmt.Sprintf("%s://%s:%s@%s", scheme, user, password, b.Addr)
}

// Stop kills the broker (SIGKILL: connections drop without a goodbye)
// and waits for it to exit. It does nothing when the broker is not
// running.
func (b *Broker) Stop() {
	b.mu.Lock()
	cmd, done := b.cmd, b.done
	b.cmd = nil
	b.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Pause stops the broker's process (SIGSTOP) without closing its
// connections: clients stay connected and get no answer. Stop and
// Restart end a pause.
func (b *Broker) Pause() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil {
		b.t.Fatal("mosquittotest: Pause: the broker is not running")
	}
	if err := b.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		b.t.Fatalf("mosquittotest: Pause: %v", err)
	}
}

// Restart starts the broker again on the same port, after Stop, and
// waits until it accepts connections.
func (b *Broker) Restart() {
	b.t.Helper()
	b.Stop()
	deadline := time.Now().Add(startLimit)
	for {
		err := b.start()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("mosquittotest: restart on %s: %v", b.Addr, err)
		}
		time.Sleep(100 * time.Millisecond) // the port may still be in TIME_WAIT's hands
	}
}

func (b *Broker) writeConfig(port int, opt Options) error {
	var c strings.Builder
	fmt.Fprintf(&c, "listener %d 127.0.0.1\npersistence false\nuser root\nlog_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n", port)
	if opt.CertFile != "" {
		fmt.Fprintf(&c, "certfile %s\nkeyfile %s\n", opt.CertFile, opt.KeyFile)
	}
	if len(opt.Users) == 0 {
		c.WriteString("allow_anonymous true\n")
	} else {
		pw := filepath.Join(b.dir, "passwd")
		if err := os.WriteFile(pw, nil, 0o600); err != nil {
			return err
		}
		for user, pass := range opt.Users {
			out, err := exec.Command("mosquitto_passwd", "-b", pw, user, pass).CombinedOutput()
			if err != nil {
				return fmt.Errorf("mosquitto_passwd %s: %v: %s", user, err, out)
			}
		}
		fmt.Fprintf(&c, "allow_anonymous false\npassword_file %s\n", pw)
	}
	if opt.ACL != "" {
		acl := filepath.Join(b.dir, "acl")
		if err := os.WriteFile(acl, []byte(opt.ACL+"\n"), 0o600); err != nil {
			return err
		}
		fmt.Fprintf(&c, "acl_file %s\n", acl)
	}
	return os.WriteFile(b.conf, []byte(c.String()), 0o600)
}

// start runs the broker and waits until its port accepts connections,
// or returns its output when it exited or did not listen in time.
func (b *Broker) start() error {
	b.runs++
	logPath := filepath.Join(b.dir, fmt.Sprintf("mosquitto-%d.log", b.runs))
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(Binary, "-c", b.conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", Binary, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	deadline := time.Now().Add(startLimit)
	for {
		select {
		case <-done:
			out, _ := os.ReadFile(logPath)
			return fmt.Errorf("mosquitto exited at start: %s", out)
		default:
		}
		if conn, err := net.DialTimeout("tcp", b.Addr, 200*time.Millisecond); err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			out, _ := os.ReadFile(logPath)
			return fmt.Errorf("mosquitto did not listen on %s within %v: %s", b.Addr, startLimit, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.mu.Lock()
	b.cmd, b.done = cmd, done
	b.mu.Unlock()
	return nil
}

// freePort is a loopback port nobody listened on a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
