package metrics

import (
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/status"

	"github.com/accel-cri/accel-cri/cri"
	"github.com/accel-cri/accel-cri/images"
	"github.com/accel-cri/accel-cri/internal/version"
	"github.com/accel-cri/accel-cri/sandbox/podnet"
)

// Namespace prefixes every accel-cri series.
const Namespace = "accel_cri"

// Label values of result labels.
const (
	ResultSuccess = "success"
	ResultFailure = "failure"
)

// latencyBuckets span what CRI calls, CNI plugins and pulls take: a
// millisecond for a list from memory up to minutes for a large pull.
var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// Metrics is accel-cri's registry and the series it fills. Its observer
// methods are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	criDuration *prometheus.HistogramVec
	criRequests *prometheus.CounterVec

	pullDuration *prometheus.HistogramVec
	pullBytes    prometheus.Counter
	pullFailures *prometheus.CounterVec
	signatures   *prometheus.CounterVec

	cniDuration *prometheus.HistogramVec

	deviceAllocations *prometheus.CounterVec
}

// Option configures what New registers beyond the always-present series.
type Option func(*Metrics)

// New builds the registry: Go runtime and process collectors, build info,
// the observer series, and the scrape-time collectors the options name.
func New(opts ...Option) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.criDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: "cri", Name: "request_duration_seconds",
		Help:    "Latency of CRI calls by method (streams: until the stream ends).",
		Buckets: latencyBuckets,
	}, []string{"method"})
	m.criRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "cri", Name: "requests_total",
		Help: "CRI calls by method and gRPC status code (OK for success).",
	}, []string{"method", "code"})
	m.pullDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: "image", Name: "pull_duration_seconds",
		Help:    "Duration of image pulls (CRI PullImage and sandbox image pulls) by result.",
		Buckets: latencyBuckets,
	}, []string{"result"})
	m.pullBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "image", Name: "pull_bytes_total",
		Help: "Content size (manifest, config, layers) of the images pulled successfully.",
	})
	m.pullFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "image", Name: "pull_failures_total",
		Help: "Failed image pulls by the gRPC code the failure maps to (NotFound, Unauthenticated, Unavailable, DeadlineExceeded, ...).",
	}, []string{"code"})
	m.cniDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: "cni", Name: "operation_duration_seconds",
		Help:    "Duration of a pod's CNI ADD (op=setup) and DEL (op=teardown) over all plugins, by result.",
		Buckets: latencyBuckets,
	}, []string{"op", "result"})
	m.signatures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "image", Name: "signature_verifications_total",
		Help: "Image signature policy decisions by phase (pull: PullImage; create: the re-check at CreateContainer) and result (verified, accepted without a signature, rejected, error: policy or signatures unreadable).",
	}, []string{"phase", "result"})
	m.deviceAllocations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "device", Name: "allocations_total",
		Help: "CDI devices given to containers at CreateContainer, by resource (CDI vendor/class).",
	}, []string{"resource"})
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "build_info",
		Help: "Always 1; the labels say which accel-cri runs and which containerd it expects.",
	}, []string{"version", "commit", "containerd"})
	buildInfo.WithLabelValues(version.Version, version.Commit, version.Containerd()).Set(1)

	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo,
		m.criDuration, m.criRequests,
		m.pullDuration, m.pullBytes, m.pullFailures, m.signatures,
		m.cniDuration,
		m.deviceAllocations,
	)
	for _, o := range opts {
		o(m)
	}
	return m
}

// Registry is the registry the series live in (for tests and extra collectors).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// ObserveCRI records one CRI call; err is the status error the client got.
func (m *Metrics) ObserveCRI(fullMethod string, d time.Duration, err error) {
	method := fullMethod[strings.LastIndex(fullMethod, "/")+1:]
	m.criDuration.WithLabelValues(method).Observe(d.Seconds())
	m.criRequests.WithLabelValues(method, status.Code(err).String()).Inc()
}

// ObserveSignature implements images.SignatureObserver.
func (m *Metrics) ObserveSignature(phase, result string) {
	m.signatures.WithLabelValues(phase, result).Inc()
}

// ObservePull implements images.PullObserver.
func (m *Metrics) ObservePull(_ string, size uint64, d time.Duration, err error) {
	if err != nil {
		m.pullDuration.WithLabelValues(ResultFailure).Observe(d.Seconds())
		m.pullFailures.WithLabelValues(status.Code(cri.ToStatus(err)).String()).Inc()
		return
	}
	m.pullDuration.WithLabelValues(ResultSuccess).Observe(d.Seconds())
	m.pullBytes.Add(float64(size))
}

// ObserveCNI implements podnet.CNIObserver.
func (m *Metrics) ObserveCNI(op string, d time.Duration, err error) {
	m.cniDuration.WithLabelValues(op, result(err)).Observe(d.Seconds())
}

func result(err error) string {
	if err != nil {
		return ResultFailure
	}
	return ResultSuccess
}

var (
	_ podnet.CNIObserver       = (*Metrics)(nil)
	_ images.PullObserver      = (*Metrics)(nil)
	_ images.SignatureObserver = (*Metrics)(nil)
)

// Register applies options after New, for collectors over parts that are
// built after the observers were handed out (the runtime, the managed
// containerd, the device manager).
func (m *Metrics) Register(opts ...Option) {
	for _, o := range opts {
		o(m)
	}
}
