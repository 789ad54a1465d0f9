// Package metrics holds the gateway's Prometheus metrics, in one registry
// served at /metrics. Counters are labelled by partner (and document type
// where there is one); the queue depth is read from the spool at scrape time.
package metrics

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the gateway's instruments.
type Metrics struct {
	reg *prometheus.Registry

	FilesReceived *prometheus.CounterVec   // partner, channel, outcome (received, duplicate)
	Documents     *prometheus.CounterVec   // partner, type, outcome (mapped, rejected, held, delivered, dead)
	StageSeconds  *prometheus.HistogramVec // stage
	ERPRequests   *prometheus.CounterVec   // endpoint, outcome (ok, retry, refused, error)
	ArchivePuts   *prometheus.CounterVec   // outcome (ok, error)
	PollRuns      *prometheus.CounterVec   // partner, poll, status
	PollFiles     *prometheus.CounterVec   // partner, poll
	SFTPLogins    *prometheus.CounterVec   // partner, outcome (ok, failed)
	AcksOverdue   *prometheus.GaugeVec     // partner
	Webhooks      *prometheus.CounterVec   // event, outcome
}

// QueueDepth reads how many items are in each state, at scrape time.
type QueueDepth func(ctx context.Context) (map[string]map[string]int, error) // kind -> state -> count

// New creates the metrics; depth, when not nil, is called on every scrape.
func New(depth QueueDepth, log *slog.Logger) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	f := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "edigw", Name: name, Help: help}, labels)
		m.reg.MustRegister(c)
		return c
	}
	m.FilesReceived = f("files_received_total", "Files received, by partner, channel and outcome (received or duplicate).", "partner", "channel", "outcome")
	m.Documents = f("documents_total", "Documents by partner, type and the outcome they reached (mapped, rejected, held, delivered, dead).", "partner", "type", "outcome")
	m.ERPRequests = f("erp_requests_total", "ERP delivery attempts by endpoint and outcome (ok, retry, refused, error).", "endpoint", "outcome")
	m.ArchivePuts = f("archive_puts_total", "Archive writes by outcome (ok, error).", "outcome")
	m.PollRuns = f("poll_runs_total", "Poll runs by partner, poll and status (ok, partial, failed).", "partner", "poll", "status")
	m.PollFiles = f("poll_files_fetched_total", "Files fetched by polls.", "partner", "poll")
	m.SFTPLogins = f("sftp_logins_total", "SFTP listener logins by partner (unknown users: \"\") and outcome (ok, failed).", "partner", "outcome")
	m.Webhooks = f("webhook_deliveries_total", "Webhook deliveries by event type and outcome.", "event", "outcome")
	m.StageSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "edigw", Name: "stage_seconds",
		Help: "Time a pipeline stage took, by stage (file, deliver, outbound).", Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12)}, []string{"stage"})
	m.AcksOverdue = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "edigw", Name: "acks_overdue",
		Help: "Our purchase orders whose functional ack is overdue, by partner."}, []string{"partner"})
	m.reg.MustRegister(m.StageSeconds, m.AcksOverdue, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if depth != nil {
		m.reg.MustRegister(&queueCollector{depth: depth, log: log,
			desc: prometheus.NewDesc("edigw_queue_depth", "Files and documents in each state, read from the spool.", []string{"kind", "state"}, nil)})
	}
	return m
}

// Handler serves the registry.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Since observes the seconds since start for stage.
func (m *Metrics) Since(stage string, start time.Time) {
	m.StageSeconds.WithLabelValues(stage).Observe(time.Since(start).Seconds())
}

type queueCollector struct {
	depth QueueDepth
	desc  *prometheus.Desc
	log   *slog.Logger
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := c.depth(ctx)
	if err != nil {
		c.log.Error("metrics: queue depth", "err", err)
		return
	}
	for kind, states := range counts {
		for state, n := range states {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), kind, state)
		}
	}
}
