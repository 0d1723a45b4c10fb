package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

var listenRE = regexp.MustCompile(`listening on (http://[0-9.:]+)`)

// waitForURL reads the server's stdout until it prints its address.
func waitForURL(t *testing.T, r io.Reader) string {
	t.Helper()
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
				break
			}
		}
		_, _ = io.Copy(io.Discard, r)
	}()
	select {
	case u := <-found:
		return u
	case <-time.After(60 * time.Second):
		t.Fatal("server did not print its address within 60s")
	}
	return ""
}

type client struct {
	t    *testing.T
	base string
	hdr  map[string]string
}

// do sends one JSON request and decodes the JSON answer into a map; any
// transport or decoding failure fails the test.
func (c client) do(method, path string, body any) (int, map[string]any) {
	c.t.Helper()
	st, m, err := c.try(method, path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	return st, m
}

// try is do without failing the test (for a server being killed).
func (c client) try(method, path string, body any) (int, map[string]any, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range c.hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: read: %w", method, path, err)
	}
	var m map[string]any
	if len(raw) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &m); err != nil {
			return 0, nil, fmt.Errorf("%s %s: bad JSON %q: %w", method, path, raw, err)
		}
	}
	return resp.StatusCode, m, nil
}

func (c client) with(k, v string) client {
	h := map[string]string{}
	for a, b := range c.hdr {
		h[a] = b
	}
	h[k] = v
	return client{c.t, c.base, h}
}
