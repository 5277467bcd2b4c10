package metrics

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/devices"
	"github.com/accel-cri/accel-cri/sandbox"
)

// RuntimeLister lists pods and containers (sandbox.Runtime); the pods and
// containers gauges ask it at scrape time.
type RuntimeLister interface {
	ListPods(sandbox.PodFilter) []*runtimeapi.PodSandbox
	ListContainers(sandbox.ContainerFilter) []*runtimeapi.Container
}

// DeviceLister lists the node's devices (devices.Manager), asked at scrape time.
type DeviceLister interface {
	Devices() []devices.Device
}

// ContainerdDaemon is the managed containerd (managed.Daemon).
type ContainerdDaemon interface {
	Restarts() int
	PID() int
}

// WithRuntime adds accel_cri_pods{state} and accel_cri_containers{state}.
func WithRuntime(r RuntimeLister) Option {
	return func(m *Metrics) { m.reg.MustRegister(&stateCollector{r: r}) }
}

// WithDevices adds accel_cri_devices{resource,health}.
func WithDevices(d DeviceLister) Option {
	return func(m *Metrics) { m.reg.MustRegister(&deviceCollector{d: d}) }
}

// WithContainerd adds accel_cri_containerd_restarts_total and
// accel_cri_containerd_up for the managed containerd.
func WithContainerd(d ContainerdDaemon) Option {
	return func(m *Metrics) {
		m.reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Namespace: Namespace, Subsystem: "containerd", Name: "restarts_total",
				Help: "Times the managed containerd died and was restarted by accel-cri.",
			}, func() float64 { return float64(d.Restarts()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Namespace: Namespace, Subsystem: "containerd", Name: "up",
				Help: "1 while the managed containerd process runs, 0 while it is being restarted.",
			}, func() float64 {
				if d.PID() > 0 {
					return 1
				}
				return 0
			}),
		)
	}
}

var (
	podsDesc = prometheus.NewDesc(Namespace+"_pods", "Pod sandboxes by CRI state (ready, notready).", []string{"state"}, nil)
	ctrsDesc = prometheus.NewDesc(Namespace+"_containers", "Containers by CRI state (created, running, exited, unknown).", []string{"state"}, nil)
	devsDesc = prometheus.NewDesc(Namespace+"_devices", "Devices found by resource (CDI vendor/class, the device plugin's resource name) and health.", []string{"resource", "health"}, nil)
)

// stateCollector counts pods and containers by state from the runtime's
// in-memory store at scrape time. Every state is reported, 0 included, so
// a dashboard's series never vanish.
type stateCollector struct{ r RuntimeLister }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- podsDesc
	ch <- ctrsDesc
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	pods := map[string]float64{}
	for v := range runtimeapi.PodSandboxState_name {
		pods[podState(runtimeapi.PodSandboxState(v))] = 0
	}
	for _, p := range c.r.ListPods(sandbox.PodFilter{}) {
		pods[podState(p.GetState())]++
	}
	ctrs := map[string]float64{}
	for v := range runtimeapi.ContainerState_name {
		ctrs[containerState(runtimeapi.ContainerState(v))] = 0
	}
	for _, ct := range c.r.ListContainers(sandbox.ContainerFilter{}) {
		ctrs[containerState(ct.GetState())]++
	}
	for s, n := range pods {
		ch <- prometheus.MustNewConstMetric(podsDesc, prometheus.GaugeValue, n, s)
	}
	for s, n := range ctrs {
		ch <- prometheus.MustNewConstMetric(ctrsDesc, prometheus.GaugeValue, n, s)
	}
}

// podState is SANDBOX_READY -> ready.
func podState(s runtimeapi.PodSandboxState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "SANDBOX_"))
}

// containerState is CONTAINER_RUNNING -> running.
func containerState(s runtimeapi.ContainerState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "CONTAINER_"))
}

// deviceCollector reports the devices the manager knows, healthy and
// unhealthy (vanished), by resource.
type deviceCollector struct{ d DeviceLister }

func (c *deviceCollector) Describe(ch chan<- *prometheus.Desc) { ch <- devsDesc }

func (c *deviceCollector) Collect(ch chan<- prometheus.Metric) {
	type key struct{ resource, health string }
	counts := map[key]float64{}
	for _, d := range c.d.Devices() {
		res := devices.ResourceName(d.Class)
		// Both health values of a resource exist once it has a device.
		counts[key{res, string(devices.Healthy)}] += 0
		counts[key{res, string(devices.Unhealthy)}] += 0
		h := d.Health
		if h == "" {
			h = devices.Healthy
		}
		counts[key{res, string(h)}]++
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(devsDesc, prometheus.GaugeValue, n, k.resource, k.health)
	}
}
