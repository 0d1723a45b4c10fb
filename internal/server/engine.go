package server

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spkey-dev/spkey/internal/app"
	"github.com/spkey-dev/spkey/internal/domain/user"
	"github.com/spkey-dev/spkey/internal/es"
	"github.com/spkey-dev/spkey/internal/notify"
	"github.com/spkey-dev/spkey/internal/outbox"
	"github.com/spkey-dev/spkey/internal/store"
	"github.com/spkey-dev/spkey/internal/webhook"
)

// This file is where the outbox engine and its consumers are put
// together: a new consumer is registered in newEngine (if it needs only
// the store) or in registerConsumers (if it needs the app service).

// newEngine builds the node's outbox engine over cfg.Store: the live
// stream (woken through hub) and cfg.Channels, its attempts observed by
// the delivery metrics in reg.
func newEngine(cfg Config, hub *notify.Hub, reg *prometheus.Registry, log *slog.Logger) *outbox.Engine {
	ncfg := cfg.Notify
	ncfg.Observe = deliveryMetrics(reg)
	e := outbox.New(cfg.Store, ncfg, log)
	notify.Register(e, cfg.Store, hub, log, cfg.Channels...)
	return e
}

// registerConsumers registers on e the consumers that record through the
// app service: the partner webhooks, with cfg.Webhooks and the app's URL
// policy. Then e routes the store's appends (replacing OpenStore's
// Routing).
func registerConsumers(e *outbox.Engine, cfg Config, svc *app.Service, log *slog.Logger) {
	wcfg := cfg.Webhooks
	wcfg.Safety = cfg.App.Safety
	webhook.New(cfg.Store, svc, wcfg, log).Register(e)
	cfg.Store.SetRouter(e)
}

// Routing is the outbox routing of a process that writes but delivers
// nothing (spkey tenant create, a store opened for tests): appends queue
// the partner webhook rows and live doorbell rows a server's would, for a
// server to deliver. OpenStore installs it; New replaces it with the
// node's running engine.
func Routing(st *store.Store, log *slog.Logger) *outbox.Engine {
	e := outbox.New(st, outbox.Config{}, log)
	e.Register(webhook.PartnerRows())
	e.Register(notify.Rows(user.ChannelLive))
	return e
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
