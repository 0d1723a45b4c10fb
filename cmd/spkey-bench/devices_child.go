package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spkey-dev/spkey/internal/devices/creds"
	"github.com/spkey-dev/spkey/internal/devices/sim"
	"github.com/spkey-dev/spkey/internal/domain/lock"
)

// The devices of scenario (b) run in a child process (spkey-bench
// -devices-child ADDR), so that the bench process's memory is the
// server's alone. Each is a minimal MQTT 3.1.1 client over raw TCP: it
// logs in with its thing's password, subscribes (QoS 0) to the delta
// topics of its classic shadow and key pages, reads and discards what
// comes, and pings every 20 s (keep-alive 60 s). The parent writes
// "thing password" lines and "end" on the child's standard input; the
// child connects them all (64 at a time), prints "ready N" and holds them
// until its standard input closes.

// devKeepAlive is the devices' MQTT keep-alive.
const devKeepAlive = 60 * time.Second

// issuePasswords issues a password for the things of locks 1..n through
// the store directly (creds.Issuer), 8 at a time.
func issuePasswords(ctx context.Context, d *devNode, n int) ([]sim.Credentials, error) {
	iss := creds.NewIssuer(d.st, nil)
	out := make([]sim.Credentials, n)
	err := parallel(ctx, min(8, n), func(w int) error {
		for i := w; i < n && ctx.Err() == nil; i += min(8, n) {
			thing := lock.ThingName(int64(i + 1))
			user, pw, err := iss.IssuePassword(ctx, thing, time.Now())
			if err != nil {
				return err
			}
			out[i] = sim.Credentials{ThingName: thing, Username: user, Password: pw}
		}
		return nil
	})
	return out, err
}

// deviceChild is the running child process.
type deviceChild struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *bytes.Buffer
}

// startDeviceChild starts the child, hands it the credentials and waits
// until it printed that every device is connected and subscribed.
func startDeviceChild(ctx context.Context, addr string, cs []sim.Credentials) (*deviceChild, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe, "-devices-child", addr)
	cmd.Env = append(os.Environ(), memoryChildEnv+"=1")
	ch := &deviceChild{cmd: cmd, stderr: &bytes.Buffer{}}
	cmd.Stderr = ch.stderr
	if ch.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: devices child: %w", err)
	}
	w := bufio.NewWriter(ch.stdin)
	for _, c := range cs {
		fmt.Fprintf(w, "%s %s\n", c.Username, c.Password)
	}
	fmt.Fprintln(w, "end")
	if err := w.Flush(); err != nil {
		ch.kill()
		return nil, fmt.Errorf("bench: devices child: %w", err)
	}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case l := <-line:
		if l != "ready "+strconv.Itoa(len(cs)) {
			ch.kill()
			return nil, fmt.Errorf("bench: devices child said %q: %s", l, strings.TrimSpace(ch.stderr.String()))
		}
	case <-time.After(5 * time.Minute):
		ch.kill()
		return nil, fmt.Errorf("bench: devices child: not ready within 5 minutes: %s", strings.TrimSpace(ch.stderr.String()))
	}
	return ch, nil
}

func (ch *deviceChild) kill() {
	_ = ch.stdin.Close()
	_ = ch.cmd.Process.Kill()
	_ = ch.cmd.Wait()
}

// stop closes the child's standard input (it disconnects its devices and
// exits) and waits for it.
func (ch *deviceChild) stop() error {
	_ = ch.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- ch.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("bench: devices child: %w: %s", err, strings.TrimSpace(ch.stderr.String()))
		}
		return nil
	case <-time.After(time.Minute):
		_ = ch.cmd.Process.Kill()
		<-done
		return errors.New("bench: devices child did not exit within a minute of its input closing")
	}
}

// deviceChildMain is the child: it connects the devices given on stdin to
// the broker at addr, prints "ready N" and holds them until stdin closes.
func deviceChildMain(ctx context.Context, addr string, stdin io.Reader, stdout io.Writer) error {
	type cred struct{ user, pw string }
	var cs []cred
	sc := bufio.NewScanner(stdin)
	for sc.Scan() {
		if sc.Text() == "end" {
			break
		}
		u, p, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			return errors.New("devices child: bad credential line")
		}
		cs = append(cs, cred{u, p})
	}
	if err := raiseFDLimit(uint64(len(cs)) + 256); err != nil {
		return err
	}
	conns := make([]net.Conn, len(cs))
	defer func() {
		for _, c := range conns {
			if c != nil {
				_, _ = c.Write([]byte{0xe0, 0}) // DISCONNECT
				_ = c.Close()
			}
		}
	}()
	const workers = 64
	err := parallel(ctx, min(workers, len(cs)), func(w int) error {
		for i := w; i < len(cs) && ctx.Err() == nil; i += workers {
			c, err := mqttDial(addr, cs[i].user, cs[i].pw)
			if err != nil {
				return fmt.Errorf("device %s: %w", cs[i].user, err)
			}
			conns[i] = c
			go func() { _, _ = io.Copy(io.Discard, c) }()
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ready %d\n", len(cs))
	var mu sync.Mutex // guards writes after setup: the pings only
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(devKeepAlive / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				mu.Lock()
				for _, c := range conns {
					_, _ = c.Write([]byte{0xc0, 0}) // PINGREQ
				}
				mu.Unlock()
			}
		}
	}()
	_, _ = io.Copy(io.Discard, stdin) // until the parent closes it
	close(stop)
	mu.Lock()
	defer mu.Unlock()
	return nil
}

// mqttDial connects to addr as thing user with password pw (MQTT 3.1.1,
// clean session), waits for the CONNACK, subscribes to the thing's delta
// topics at QoS 0 and waits for the SUBACK.
func mqttDial(addr, user, pw string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	var vh []byte
	vh = appendMQTTString(vh, "MQTT")
	vh = append(vh, 4, 0xc2) // level 4; username, password, clean session
	vh = binary.BigEndian.AppendUint16(vh, uint16(devKeepAlive/time.Second))
	vh = appendMQTTString(vh, user) // client id: the thing name
	vh = appendMQTTString(vh, user)
	vh = appendMQTTString(vh, pw)
	if _, err := c.Write(mqttPacket(0x10, vh)); err != nil {
		c.Close()
		return nil, err
	}
	typ, body, err := readMQTTPacket(c)
	if err != nil || typ != 0x20 || len(body) != 2 || body[1] != 0 {
		c.Close()
		return nil, fmt.Errorf("CONNACK: type %#x %v %v", typ, body, err)
	}
	base := "$aws/things/" + user + "/shadow"
	sub := []byte{0, 1} // packet id 1
	for _, f := range []string{base + "/update/delta", base + "/name/+/update/delta"} {
		sub = append(appendMQTTString(sub, f), 0)
	}
	if _, err := c.Write(mqttPacket(0x82, sub)); err != nil {
		c.Close()
		return nil, err
	}
	typ, body, err = readMQTTPacket(c)
	if err != nil || typ != 0x90 || len(body) != 4 || body[2] > 2 || body[3] > 2 {
		c.Close()
		return nil, fmt.Errorf("SUBACK: type %#x %v %v", typ, body, err)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

func appendMQTTString(b []byte, s string) []byte {
	return append(binary.BigEndian.AppendUint16(b, uint16(len(s))), s...)
}

// mqttPacket is a packet of first byte typ and body.
func mqttPacket(typ byte, body []byte) []byte {
	p := []byte{typ}
	n := len(body)
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		p = append(p, b)
		if n == 0 {
			break
		}
	}
	return append(p, body...)
}

// readMQTTPacket reads one packet: its first byte's type bits and body.
func readMQTTPacket(r io.Reader) (byte, []byte, error) {
	var b [1]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, nil, err
	}
	typ := b[0] & 0xf0
	n, mult := 0, 1
	for i := 0; ; i++ {
		if i == 4 {
			return 0, nil, errors.New("bad remaining length")
		}
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, nil, err
		}
		n += int(b[0]&0x7f) * mult
		mult *= 128
		if b[0]&0x80 == 0 {
			break
		}
	}
	if n > 1<<16 {
		return 0, nil, fmt.Errorf("packet of %d bytes", n)
	}
	body := make([]byte, n)
	_, err := io.ReadFull(r, body)
	return typ, body, err
}
