package alias

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the app's Prometheus collectors, registered with the config's
// metrics registry, so that they appear on the admin API's /metrics with
// Caddy's own. Every name starts with caddy_dns_alias_.
type metrics struct {
	delegationState *prometheus.GaugeVec   // domain, policy, state: 1 for the current state
	lastOK          *prometheus.GaugeVec   // domain: unix time of the last passing check
	gateRefusals    *prometheus.CounterVec // finding
	writes          *prometheus.CounterVec // result: ok, error
	deletes         *prometheus.CounterVec // result: ok, error
	served          prometheus.Histogram
	presented       prometheus.GaugeFunc
	sweepRemoved    prometheus.Counter
	// permissionOverload counts handshakes refused for load (max_checks,
	// domain_rate), which say nothing about the names.
	permissionOverload prometheus.Counter
}

func newMetrics(presented func() float64) *metrics {
	const ns, sub = "caddy", "dns_alias"
	return &metrics{
		delegationState: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "delegation_state",
			Help: "The current state of a tracked name's delegation, as the label state (ok, unknown, or the finding that breaks it); always 1."},
			[]string{"domain", "policy", "state"}),
		lastOK: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "delegation_last_ok_timestamp_seconds",
			Help: "Unix time of the last delegation check of a tracked name that passed (time() minus it: seconds since)."},
			[]string{"domain"}),
		gateRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "gate_refusals_total",
			Help: "Obtains and renewals the gate aborted before the ACME order, by finding."}, []string{"finding"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "record_writes_total",
			Help: "Challenge record writes through inner providers, by result."}, []string{"result"}),
		deletes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "record_deletes_total",
			Help: "Challenge record deletes through inner providers, by result."}, []string{"result"}),
		served: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "write_served_seconds",
			Help:    "Time from a challenge record's write until every authoritative server of the alias zone served it.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}}),
		presented: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "records_presented",
			Help: "Challenge records presented by this process now."}, presented),
		sweepRemoved: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "sweep_removed_total",
			Help: "Orphaned challenge records the journal sweep removed."}),
		permissionOverload: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "permission_overload_total",
			Help: "On-demand handshakes the permission module refused for load (max_checks or domain_rate), without judging the name."}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.delegationState, m.lastOK, m.gateRefusals, m.writes, m.deletes, m.served, m.presented, m.sweepRemoved, m.permissionOverload}
}

// register adds the collectors to reg; a registry that has them already
// (the same config provisioned twice) keeps its own.
func (m *metrics) register(reg *prometheus.Registry) error {
	for _, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			if _, dup := err.(prometheus.AlreadyRegisteredError); !dup {
				return err
			}
		}
	}
	return nil
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

// Wrote, Deleted and Served make the metrics the providers' observer.
func (m *metrics) Wrote(err error)        { m.writes.WithLabelValues(result(err)).Inc() }
func (m *metrics) Deleted(err error)      { m.deletes.WithLabelValues(result(err)).Inc() }
func (m *metrics) Served(d time.Duration) { m.served.Observe(d.Seconds()) }

// setState moves a tracked name's delegation state from old ("" for none)
// to state: one series per name, valued 1.
func (m *metrics) setState(domain, policy, old, state string) {
	if old != "" && old != state {
		m.delegationState.DeleteLabelValues(domain, policy, old)
	}
	m.delegationState.WithLabelValues(domain, policy, state).Set(1)
}
