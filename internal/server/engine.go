package server

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/notify"
	"github.com/spkey-dev/spkey/internal/webhook"
)

// This file is where the outbox engine and its consumers are put
// together: a new consumer is registered in newEngine (if it needs only
// the store) or in registerConsumers (if it needs the app service).

// newEngine builds the node's outbox engine over cfg.Store: the live
// stream (woken through hub) and cfg.Channels, its attempts observed by
// the delivery metrics in reg.
func newEngine(cfg Config, hub *notify.Hub, reg *prometheus.Registry, log *slog.Logger) *notify.Engine {
	ncfg := cfg.Notify
	ncfg.Observe = deliveryMetrics(reg)
	return notify.New(cfg.Store, hub, ncfg, log, cfg.Channels...)
}

// registerConsumers registers on e the consumers that record through the
// app service: the partner webhooks, with cfg.Webhooks and the app's URL
// policy.
func registerConsumers(e *notify.Engine, cfg Config, svc *app.Service, log *slog.Logger) {
	wcfg := cfg.Webhooks
	wcfg.Safety = cfg.App.Safety
	webhook.New(cfg.Store, svc, wcfg, log).Register(e)
}

// appChannels tells the app which doorbell channels besides the live
// stream are on.
func appChannels(chans []notify.Channel) app.Channels {
	var on app.Channels
	for _, c := range chans {
		switch c.Consumer() {
		case es.ConsumerDoorbellEmail:
			on.Email = true
		case es.ConsumerDoorbellHook:
			on.Hook = true
		}
	}
	return on
}
