package acmednsserver

import (
	"errors"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// updates counts the endpoints' updates by account and outcome: its
// series are bounded by the configured accounts (a request naming no
// account counts as "unknown"), times the outcomes. One counter for the
// process, registered with each config's metrics registry, so that a
// config reload does not reset it.
var updates = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "caddy", Subsystem: "dns_alias", Name: "acme_dns_updates_total",
	Help: "Updates to the acme-dns endpoint, by account (unknown: no configured account) and outcome (written, refused_auth, refused_value, refused_rate, failed)."},
	[]string{"account", "outcome"})

// updateCounter makes the counter the servers' Observer.
type updateCounter struct{ *prometheus.CounterVec }

func (c updateCounter) Updated(account string, o Outcome) {
	if account == "" {
		account = "unknown"
	}
	c.WithLabelValues(account, string(o)).Inc()
}

// registerUpdates adds the counter to the config's metrics registry (a
// registry that has it already keeps it) and returns it as an Observer.
func registerUpdates(ctx caddy.Context) (Observer, error) {
	if err := ctx.GetMetricsRegistry().Register(updates); err != nil {
		if !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
			return nil, err
		}
	}
	return updateCounter{updates}, nil
}
