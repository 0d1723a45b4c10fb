package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/spkey-dev/spkey/internal/notify"
	"github.com/spkey-dev/spkey/internal/server"
)

// validateLease holds --outbox-lease above the longest delivery attempt
// this node may make (a partner webhook request, and the doorbell hook's
// and e-mail's when they are on) plus leaseMargin: a shorter lease lets
// another node take a delivery over while it is still being sent.
func (c *config) validateLease() error {
	longest, what := c.WebhookTimeout, fmt.Sprintf("--webhook-timeout (%s)", c.WebhookTimeout)
	if c.WebhookTimeout <= 0 {
		return fmt.Errorf("--webhook-timeout must be positive")
	}
	if c.HookURL != "" && notify.DefaultHookTimeout > longest {
		longest, what = notify.DefaultHookTimeout, fmt.Sprintf("the doorbell hook's request timeout (%s, with --notify-hook-url)", notify.DefaultHookTimeout)
	}
	if c.SMTPURL != "" && notify.DefaultEmailTimeout > longest {
		longest, what = notify.DefaultEmailTimeout, fmt.Sprintf("the doorbell e-mail's timeout (%s, with --smtp-url)", notify.DefaultEmailTimeout)
	}
	if c.OutboxLease < longest+leaseMargin {
		return fmt.Errorf("--outbox-lease (%s) must be at least the longest delivery timeout, %s, plus %s: set --outbox-lease to %s or more, or lower --webhook-timeout",
			c.OutboxLease, what, leaseMargin, longest+leaseMargin)
	}
	return nil
}

// validateBounds checks the live stream caps, the metrics listener and the
// audience rule of outside tokens.
func (c *config) validateBounds() error {
	if c.MaxStreams < 1 || c.MaxStreamsPerUser < 1 || c.MaxStreamsPerKey < 1 {
		return fmt.Errorf("--max-streams, --max-streams-per-user and --max-streams-per-key must be at least 1")
	}
	if c.MaxStreamsPerUser > c.MaxStreams {
		return fmt.Errorf("--max-streams-per-user (%d) must not exceed --max-streams (%d)", c.MaxStreamsPerUser, c.MaxStreams)
	}
	// A credential's streams of one user are among its streams of all
	// users. --max-streams-per-key may exceed --max-streams (the node's
	// cap then binds first), so that lowering --max-streams alone works.
	if c.MaxStreamsPerUser > c.MaxStreamsPerKey {
		return fmt.Errorf("--max-streams-per-user (%d) must not exceed --max-streams-per-key (%d)", c.MaxStreamsPerUser, c.MaxStreamsPerKey)
	}
	if c.MetricsToken != "" && c.MetricsAddr == "" {
		return fmt.Errorf("--metrics-token needs --metrics-addr (the metrics are not served on the API's address)")
	}
	if c.MetricsAddr != "" {
		_, port, err := net.SplitHostPort(c.MetricsAddr)
		if err != nil {
			return fmt.Errorf("--metrics-addr must be host:port (e.g. 127.0.0.1:9787), or empty to disable the metrics: %v", err)
		}
		if c.MetricsAddr == c.Addr && port != "0" {
			return fmt.Errorf("--metrics-addr must differ from --addr: the metrics are not served on the API's address")
		}
	}
	if c.MetricsToken != "" && len(c.MetricsToken) < 16 {
		return fmt.Errorf("--metrics-token must be at least 16 characters")
	}
	if c.JWTIssuer != "" {
		switch {
		case c.JWTAudience == "" && !c.JWTAudienceAny:
			return fmt.Errorf("--jwt-issuer needs --jwt-audience (SPKEY_JWT_AUDIENCE): the aud your issuer gives tokens meant for spkey, so that tokens it mints for other apps are refused; " +
				"if the issuer mints tokens for spkey alone, set --jwt-audience-any (SPKEY_JWT_AUDIENCE_ANY=true) instead")
		case c.JWTAudience != "" && c.JWTAudienceAny:
			return fmt.Errorf("--jwt-audience and --jwt-audience-any exclude each other: keep one")
		}
	}
	return nil
}

// serveMetrics serves node's metrics on --metrics-addr; it returns the
// address it listens on ("" when the metrics are off) and a stop func.
func (c *config) serveMetrics(node *server.Node, log *slog.Logger) (string, func(context.Context), error) {
	if c.MetricsAddr == "" {
		return "", func(context.Context) {}, nil
	}
	ln, err := net.Listen("tcp", c.MetricsAddr)
	if err != nil {
		return "", nil, fmt.Errorf("listen on --metrics-addr %s: %w (set another address, or an empty one to disable the metrics)", c.MetricsAddr, err)
	}
	if host, _, _ := net.SplitHostPort(c.MetricsAddr); c.MetricsToken == "" && !loopbackHost(host) {
		log.Warn("metrics served beyond loopback without --metrics-token: keep the address private, or set a token", "addr", c.MetricsAddr)
	}
	return ln.Addr().String(), node.ServeMetrics(ln, c.MetricsToken), nil
}

// loopbackHost reports whether host names only this machine.
func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
