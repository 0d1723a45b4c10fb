package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/spkey-dev/spkey/internal/store"
)

// registerProcessMetrics registers the Go runtime's and the process's
// metrics in reg.
func registerProcessMetrics(reg *prometheus.Registry) {
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

// countStore registers the event store's metrics in reg and sets st's
// hooks to feed them.
func countStore(st *store.Store, reg *prometheus.Registry) {
	appends := prometheus.NewCounter(prometheus.CounterOpts{Name: "spkey_event_appends_total", Help: "Events appended to the event store."})
	conflicts := prometheus.NewCounter(prometheus.CounterOpts{Name: "spkey_event_conflicts_total", Help: "Appends refused with a version conflict (retried)."})
	batches := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "spkey_store_batch_size", Help: "Commands committed together by the SQLite writer (group commit).",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256}})
	reg.MustRegister(appends, conflicts, batches)
	st.SetHooks(store.Hooks{Appended: func(n int) { appends.Add(float64(n)) }, Conflict: conflicts.Inc, Batch: func(n int) { batches.Observe(float64(n)) }})
}

// deliveryMetrics registers the delivery metrics in reg and returns the
// engine's Observe hook that feeds them.
func deliveryMetrics(reg *prometheus.Registry) func(consumer, outcome string, d time.Duration) {
	attempts := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spkey_notify_attempts_total", Help: "Doorbell notification attempts by channel and outcome."}, []string{"consumer", "outcome"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "spkey_notify_attempt_seconds", Help: "Doorbell notification attempt latency by channel.",
		Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 15}}, []string{"consumer"})
	reg.MustRegister(attempts, latency)
	return func(consumer, outcome string, d time.Duration) {
		attempts.WithLabelValues(consumer, outcome).Inc()
		latency.WithLabelValues(consumer).Observe(d.Seconds())
	}
}
