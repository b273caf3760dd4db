package alias

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the app's Prometheus collectors, registered with the config's
// metrics registry, so that they appear on the admin API's /metrics with
// Caddy's own. Every name starts with caddy_dns_alias_.
type metrics struct {
	*counters
	delegations delegationCollector
	presented   prometheus.GaugeFunc
}

// counters are the metrics that count: the apps of successive configs on
// one storage count on the first one's (kept with the monitor), so that a
// reload does not reset them.
type counters struct {
	gateRefusals *prometheus.CounterVec // finding
	writes       *prometheus.CounterVec // result: ok, error
	deletes      *prometheus.CounterVec // result: ok, error
	served       prometheus.Histogram
	sweepRemoved prometheus.Counter
	dnsQueries   *prometheus.CounterVec // kind: recursive, direct
	// permissionOverload counts handshakes refused for load (max_checks
	// and the per-client bounds, domain_rate), which say nothing about the
	// names.
	permissionOverload prometheus.Counter
}

func newMetrics(presented func() float64, snapshot func() monitorSnapshot) *metrics {
	const ns, sub = "caddy", "dns_alias"
	return &metrics{counters: &counters{
		gateRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "gate_refusals_total",
			Help: "Obtains and renewals the gate aborted before the ACME order, by finding."}, []string{"finding"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "record_writes_total",
			Help: "Challenge record writes through inner providers, by result."}, []string{"result"}),
		deletes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "record_deletes_total",
			Help: "Challenge record deletes through inner providers, by result."}, []string{"result"}),
		served: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "write_served_seconds",
			Help:    "Time from a challenge record's write until every authoritative server of the alias zone served it.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}}),
		sweepRemoved: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "sweep_removed_total",
			Help: "Orphaned challenge records the journal sweep removed."}),
		dnsQueries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "dns_queries_total",
			Help: "DNS queries the alias providers sent, to the resolvers (recursive) or to authoritative servers directly (direct)."}, []string{"kind"}),
		permissionOverload: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "permission_overload_total",
			Help: "On-demand handshakes the permission module refused for load (max_checks, max_checks_per_address, max_checks_per_network or domain_rate), without judging the name."}),
	},
		delegations: delegationCollector{snapshot: snapshot,
			names: prometheus.NewDesc(prometheus.BuildFQName(ns, sub, "delegations"),
				"Tracked names by policy and delegation state (pending, ok, unknown, or the finding that breaks it).",
				[]string{"policy", "state"}, nil),
			broken: prometheus.NewDesc(prometheus.BuildFQName(ns, sub, "delegation_broken"),
				"1 for each tracked name whose delegation is broken, with the finding; no series for the others.",
				[]string{"domain", "policy", "finding"}, nil),
			lastRun: prometheus.NewDesc(prometheus.BuildFQName(ns, sub, "monitor_last_run_timestamp_seconds"),
				"Unix time the periodic delegation checks last started a run.", nil, nil),
			runs: prometheus.NewDesc(prometheus.BuildFQName(ns, sub, "monitor_runs_total"),
				"Runs of the periodic delegation checks in this process (config reloads included).", nil, nil),
			runTook: prometheus.NewDesc(prometheus.BuildFQName(ns, sub, "monitor_last_run_duration_seconds"),
				"How long the last complete run of the periodic delegation checks took.", nil, nil),
		},
		presented: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "records_presented",
			Help: "Challenge records presented by this process now."}, presented),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.delegations, m.gateRefusals, m.writes, m.deletes, m.served, m.presented, m.sweepRemoved, m.permissionOverload, m.dnsQueries}
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

// querySent counts a DNS query an alias provider's resolver sent.
func (m *metrics) querySent(direct bool) {
	kind := "recursive"
	if direct {
		kind = "direct"
	}
	m.dnsQueries.WithLabelValues(kind).Inc()
}

// delegationCollector reports the monitor's state at each scrape: counts
// per policy and state, and a series per name only while its delegation is
// broken. The series count does not grow with healthy names, and a name
// that recovers or is no longer tracked leaves no series behind.
type delegationCollector struct {
	snapshot                              func() monitorSnapshot
	names, broken, lastRun, runs, runTook *prometheus.Desc
}

// monitorSnapshot is what the collector reads of the monitor.
type monitorSnapshot struct {
	counts  map[[2]string]int // policy, state
	broken  []*health
	lastRun time.Time
	runs    int
	runTook time.Duration
}

func (c delegationCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.names
	ch <- c.broken
	ch <- c.lastRun
	ch <- c.runs
	ch <- c.runTook
}

func (c delegationCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.snapshot()
	for k, n := range s.counts {
		ch <- prometheus.MustNewConstMetric(c.names, prometheus.GaugeValue, float64(n), k[0], k[1])
	}
	for _, h := range s.broken {
		ch <- prometheus.MustNewConstMetric(c.broken, prometheus.GaugeValue, 1, h.Domain, strconv.Itoa(h.Policy), h.State)
	}
	if !s.lastRun.IsZero() {
		ch <- prometheus.MustNewConstMetric(c.lastRun, prometheus.GaugeValue, float64(s.lastRun.Unix()))
	}
	ch <- prometheus.MustNewConstMetric(c.runs, prometheus.CounterValue, float64(s.runs))
	if s.runTook > 0 {
		ch <- prometheus.MustNewConstMetric(c.runTook, prometheus.GaugeValue, s.runTook.Seconds())
	}
}
