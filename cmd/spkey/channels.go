package main

import (
	"log/slog"
	"net/http"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/notify"
	"github.com/spkey-dev/spkey/internal/portal"
)

// channels builds the configured doorbell channels besides the live
// stream: e-mail with --smtp-url, the outgoing hook with --notify-hook-url.
// It returns an error naming the setting that is wrong.
func (c *config) channels(log *slog.Logger) ([]notify.Channel, error) {
	var out []notify.Channel
	if c.SMTPURL != "" {
		e, err := notify.NewEmail(notify.EmailConfig{URL: c.SMTPURL, From: c.SMTPFrom, PublicURL: c.PublicURL})
		if err != nil {
			return nil, err
		}
		log.Info("doorbell e-mail enabled", "relay", e.String(), "from", c.SMTPFrom)
		out = append(out, e)
	}
	if c.HookURL != "" {
		h, err := notify.NewHook(notify.HookConfig{URL: c.HookURL, Secret: c.HookSecret, Safety: c.safety()})
		if err != nil {
			return nil, err
		}
		log.Info("doorbell hook enabled", "signed", c.HookSecret != "")
		out = append(out, h)
	}
	return out, nil
}

// pages returns the HTML routes (the visitor's doorbell page, the Partner
// Portal).
func (c *config) pages(log *slog.Logger) func(mux *http.ServeMux, svc *app.Service) {
	return func(mux *http.ServeMux, svc *app.Service) {
		portal.NewDoorbell(svc, portal.DoorbellConfig{PublicURL: c.PublicURL, TrustProxy: c.TrustProxy}, log).Register(mux)
		c.mountPortal(mux, svc, log)
	}
}
