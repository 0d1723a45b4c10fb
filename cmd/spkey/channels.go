package main

import (
	"log/slog"
	"net/http"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain/user"
	"github.com/spkey-dev/spkey/internal/notify"
	"github.com/spkey-dev/spkey/internal/outbox"
	"github.com/spkey-dev/spkey/internal/portal"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/webhook"
)

// routing is the outbox routing of a command that writes but delivers
// nothing (tenant create): partner webhook rows and live doorbell rows,
// for a server to deliver.
func routing(st *store.Store, log *slog.Logger) *outbox.Engine {
	e := outbox.New(st, outbox.Config{}, log)
	e.Register(webhook.PartnerRows())
	e.Register(notify.Rows(user.ChannelLive))
	return e
}

// channels builds the configured doorbell channels besides the live
// stream: e-mail with --smtp-url, the outgoing hook with --notify-hook-url.
// It returns an error naming the setting that is wrong.
func (c *config) channels(log *slog.Logger) ([]notify.Channel, app.Channels, error) {
	var out []notify.Channel
	var on app.Channels
	if c.SMTPURL != "" {
		e, err := notify.NewEmail(notify.EmailConfig{URL: c.SMTPURL, From: c.SMTPFrom, PublicURL: c.PublicURL})
		if err != nil {
			return nil, on, err
		}
		log.Info("doorbell e-mail enabled", "relay", e.String(), "from", c.SMTPFrom)
		out, on.Email = append(out, e), true
	}
	if c.HookURL != "" {
		h, err := notify.NewHook(notify.HookConfig{URL: c.HookURL, Secret: c.HookSecret, Safety: c.safety()})
		if err != nil {
			return nil, on, err
		}
		log.Info("doorbell hook enabled", "signed", c.HookSecret != "")
		out, on.Hook = append(out, h), true
	}
	return out, on, nil
}

// pages returns the HTML routes (the visitor's doorbell page, the Partner
// Portal).
func (c *config) pages(svc *app.Service, log *slog.Logger) func(mux *http.ServeMux) {
	return func(mux *http.ServeMux) {
		portal.NewDoorbell(svc, portal.DoorbellConfig{PublicURL: c.PublicURL, TrustProxy: c.TrustProxy}, log).Register(mux)
		c.mountPortal(mux, svc, log)
	}
}
