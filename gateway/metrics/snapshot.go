package metrics

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric is one family of series a SnapshotCollector computes from each
// row of a snapshot.
type Metric[T any] struct {
	// Name is the full metric name (rtgate_...), Help its description.
	Name, Help string
	// Type is prometheus.CounterValue (a count the pipeline only adds to)
	// or prometheus.GaugeValue.
	Type prometheus.ValueType
	// Value is the series' value for a row.
	Value func(T) float64
	// ExtraLabels are labels of this family only, after the collector's;
	// ExtraValues gives their values for a row (the codec of an info
	// metric).
	ExtraLabels []string
	ExtraValues func(T) []string
	// States, if set, makes the family an enum: per row one gauge series
	// per state, with a "state" label, 1 for State(row) and 0 for the
	// others (so a state change is a value change, not a new series).
	// Value and Type are then unused.
	States []string
	State  func(T) string
}

// SnapshotCollector is a prometheus.Collector that reads a snapshot of
// rows on each scrape, e.g. every stream's Status, and turns each row into
// const metrics. Pipelines keep their counters in atomics and are never
// locked or called per packet for metrics: the cost is one snapshot per
// scrape.
type SnapshotCollector[T any] struct {
	rows    func() []T
	labels  func(T) []string
	metrics []Metric[T]
	descs   []*prometheus.Desc
}

// NewSnapshotCollector returns a collector of the families ms over the
// rows that rows returns at each scrape; labelNames label every series and
// labelValues gives their values for a row. rows must be safe to call
// concurrently with the pipelines it reads.
func NewSnapshotCollector[T any](rows func() []T, labelNames []string, labelValues func(T) []string, ms ...Metric[T]) *SnapshotCollector[T] {
	c := &SnapshotCollector[T]{rows: rows, labels: labelValues, metrics: ms}
	for _, m := range ms {
		names := append(append([]string(nil), labelNames...), m.ExtraLabels...)
		if len(m.States) > 0 {
			names = append(names, "state")
		}
		c.descs = append(c.descs, prometheus.NewDesc(m.Name, m.Help, names, nil))
	}
	return c
}

// Describe sends the families' descriptions.
func (c *SnapshotCollector[T]) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect takes one snapshot and sends its series.
func (c *SnapshotCollector[T]) Collect(ch chan<- prometheus.Metric) {
	for _, row := range c.rows() {
		lv := c.labels(row)
		for i, m := range c.metrics {
			d := c.descs[i]
			values := lv
			if m.ExtraValues != nil {
				values = append(append([]string(nil), lv...), m.ExtraValues(row)...)
			}
			if len(m.States) > 0 {
				cur := m.State(row)
				for _, s := range m.States {
					v := 0.0
					if s == cur {
						v = 1
					}
					send(ch, d, prometheus.GaugeValue, v, append(append([]string(nil), values...), s))
				}
				continue
			}
			send(ch, d, m.Type, m.Value(row), values)
		}
	}
}

// send sends one const metric; a row with the wrong number of label
// values becomes an invalid metric, which fails that series of the scrape,
// not the process.
func send(ch chan<- prometheus.Metric, d *prometheus.Desc, t prometheus.ValueType, v float64, lv []string) {
	m, err := prometheus.NewConstMetric(d, t, v, lv...)
	if err != nil {
		m = prometheus.NewInvalidMetric(d, fmt.Errorf("metrics: %w", err))
	}
	ch <- m
}
