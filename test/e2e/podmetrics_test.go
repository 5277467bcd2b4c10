package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/internal/cgroups"
	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// metricsBaseLabels are the label keys every metric starts with.
var metricsBaseLabels = []string{"pod", "namespace", "container", "id", "image"}

// containerMetricNames are the cAdvisor metrics a running runc container
// must have (kubelet serves them on /metrics/cadvisor); pressure only on
// cgroup v2 with PSI, blkio only with block I/O, so neither is required.
var containerMetricNames = []string{
	"container_last_seen", "container_start_time_seconds",
	"container_cpu_usage_seconds_total", "container_cpu_user_seconds_total", "container_cpu_system_seconds_total",
	"container_cpu_cfs_periods_total", "container_cpu_cfs_throttled_periods_total", "container_cpu_cfs_throttled_seconds_total",
	"container_memory_cache", "container_memory_rss", "container_memory_kernel_usage", "container_memory_mapped_file",
	"container_memory_swap", "container_memory_failcnt", "container_memory_usage_bytes", "container_memory_max_usage_bytes",
	"container_memory_working_set_bytes", "container_memory_total_active_file_bytes", "container_memory_total_inactive_file_bytes",
	"container_memory_failures_total", "container_oom_events_total",
	"container_fs_inodes_free", "container_fs_inodes_total", "container_fs_limit_bytes", "container_fs_usage_bytes",
	"container_processes", "container_file_descriptors", "container_sockets", "container_threads", "container_threads_max",
	"container_ulimits_soft",
	"container_spec_cpu_period", "container_spec_cpu_quota", "container_spec_cpu_shares",
	"container_spec_memory_limit_bytes", "container_spec_memory_reservation_limit_bytes", "container_spec_memory_swap_limit_bytes",
}

var podMetricNames = []string{
	"container_network_receive_bytes_total", "container_network_receive_packets_total",
	"container_network_receive_packets_dropped_total", "container_network_receive_errors_total",
	"container_network_transmit_bytes_total", "container_network_transmit_packets_total",
	"container_network_transmit_packets_dropped_total", "container_network_transmit_errors_total",
}

// series is one metric's value by its extra label values ("" without).
type series map[string]map[string]uint64

func (s series) one(t *testing.T, name string) uint64 {
	t.Helper()
	if len(s[name]) != 1 {
		t.Errorf("%s: %v, want one series", name, s[name])
	}
	for _, v := range s[name] {
		return v
	}
	return 0
}

// checkSeries checks every metric against its descriptor (labels: as many
// as the keys, the base ones as given) and returns them by name.
func checkSeries(t *testing.T, keys map[string][]string, base []string, ms []*runtimeapi.Metric) series {
	t.Helper()
	out := series{}
	for _, m := range ms {
		k, ok := keys[m.Name]
		if !ok {
			t.Errorf("%s has no descriptor", m.Name)
			continue
		}
		if len(m.LabelValues) != len(k) || !slices.Equal(m.LabelValues[:len(base)], base) || m.Value == nil || m.Timestamp == 0 {
			t.Errorf("%s: labels %q for keys %q (want base %q), value %v, timestamp %d", m.Name, m.LabelValues, k, base, m.Value, m.Timestamp)
			continue
		}
		if out[m.Name] == nil {
			out[m.Name] = map[string]uint64{}
		}
		extra := strings.Join(m.LabelValues[len(base):], ",")
		if _, dup := out[m.Name][extra]; dup {
			t.Errorf("%s{%s} twice", m.Name, extra)
		}
		out[m.Name][extra] = m.GetValue().GetValue()
	}
	return out
}

// cgroupCPUNanos reads the CPU time of the container's cgroup (cgroupfs
// driver).
func cgroupCPUNanos(t *testing.T, parent, id string) uint64 {
	t.Helper()
	h := cgroups.Local()
	if h.V2() {
		raw, err := os.ReadFile(filepath.Join(h.ControllerDir("cpu", filepath.Join(parent, id)), "cpu.stat"))
		if err != nil {
			t.Fatal(err)
		}
		var usec uint64
		fmt.Sscanf(string(raw), "usage_usec %d", &usec)
		return usec * 1000
	}
	raw, err := os.ReadFile(filepath.Join(h.ControllerDir("cpuacct", filepath.Join(parent, id)), "cpuacct.usage"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// testPodMetrics runs a pod whose container burns CPU under a quota, holds
// a listening socket, talks to the gateway and writes 2 MiB into its
// layer, and checks ListMetricDescriptors and ListPodSandboxMetrics over
// the CRI socket: names, labels, and values against what the host says.
func testPodMetrics(ctx context.Context, t *testing.T, e podEnv) {
	podID, pod := e.runPod(t, "metrics")
	pst, err := e.Runtime.PodSandboxStatus(ctx, podID, false)
	if err != nil {
		t.Fatal(err)
	}
	ip := pst.GetStatus().GetNetwork().GetIp()
	gw := ip[:strings.LastIndexByte(ip, '.')] + ".1" // the test's bridge
	c := e.busybox("worker", fmt.Sprintf(`trap "exit 0" TERM; nc -l -p 9000 & nc -w 2 %s 9 </dev/null; dd if=/dev/zero of=/filler bs=1024 count=2048 2>/dev/null; echo ready; `+
		`while true; do i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; done`, gw))
	c.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 64 << 20}
	id := e.RunContainer(t, podID, pod, c)
	framework.WaitLog(t, logPath(pod, c), "ready", 30*time.Second)
	cst, err := e.Runtime.ContainerStatus(ctx, id, true)
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(cst.GetInfo()["info"]), &info); err != nil || info.PID == 0 {
		t.Fatalf("container info %v: %v", cst.GetInfo(), err)
	}

	descs, err := e.Runtime.ListMetricDescriptors(ctx)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string][]string{}
	for _, d := range descs {
		if d.Help == "" || len(d.LabelKeys) < len(metricsBaseLabels) || !slices.Equal(d.LabelKeys[:len(metricsBaseLabels)], metricsBaseLabels) {
			t.Errorf("descriptor %v", d)
		}
		keys[d.Name] = d.LabelKeys
	}
	for _, name := range append(slices.Clone(containerMetricNames), podMetricNames...) {
		if keys[name] == nil {
			t.Errorf("no descriptor for %s", name)
		}
	}

	// The collector samples every 10 s: wait for a sample that has seen
	// a second of CPU, throttling and the layer's 2 MiB.
	var cm, pm series
	deadline := time.Now().Add(90 * time.Second)
	for {
		all, err := e.Runtime.ListPodSandboxMetrics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var this *runtimeapi.PodSandboxMetrics
		for _, p := range all {
			if p.PodSandboxId == podID {
				this = p
			}
		}
		if this == nil || len(this.ContainerMetrics) != 1 || this.ContainerMetrics[0].ContainerId != id {
			t.Fatalf("metrics of pod %s: %v", podID, this)
		}
		pm = checkSeries(t, keys, []string{"metrics", "e2e", "", podID, ""}, this.Metrics)
		cm = checkSeries(t, keys, []string{"metrics", "e2e", "worker", id, e.imgs.Busybox.Ref}, this.ContainerMetrics[0].Metrics)
		var layer uint64
		for _, v := range cm["container_fs_usage_bytes"] {
			layer = v
		}
		if cm["container_cpu_usage_seconds_total"]["total"] >= 1 && cm["container_cpu_cfs_throttled_periods_total"][""] > 0 && layer >= 2<<20 {
			break
		}
		if time.Now().After(deadline) || t.Failed() {
			t.Fatalf("after %s: cpu %v, throttled %v, layer %d", 90*time.Second, cm["container_cpu_usage_seconds_total"],
				cm["container_cpu_cfs_throttled_periods_total"], layer)
		}
		time.Sleep(time.Second)
	}
	t.Logf("container metrics %v\npod metrics %v", cm, pm)
	for _, name := range containerMetricNames {
		if cm[name] == nil {
			t.Errorf("container metric %s missing", name)
		}
	}
	for _, name := range podMetricNames {
		if pm[name]["eth0"] == 0 && !strings.Contains(name, "dropped") && !strings.Contains(name, "errors") {
			t.Errorf("pod metric %s{eth0} = %v: the container talked to the gateway", name, pm[name])
		}
	}

	// Values, against the host and the container's config.
	now := time.Now().Unix()
	if v := int64(cm.one(t, "container_last_seen")); v > now || v < now-30 {
		t.Errorf("container_last_seen %d, now %d", v, now)
	}
	if v := int64(cm.one(t, "container_start_time_seconds")); v != cst.GetStatus().GetStartedAt()/1e9 {
		t.Errorf("container_start_time_seconds %d, started at %d", v, cst.GetStatus().GetStartedAt())
	}
	cpu := cm.one(t, "container_cpu_usage_seconds_total")
	if host := cgroupCPUNanos(t, pod.Linux.CgroupParent, id) / 1e9; cpu > host {
		t.Errorf("cpu %d s, the cgroup says %d s since", cpu, host)
	}
	if us := cm.one(t, "container_cpu_user_seconds_total") + cm.one(t, "container_cpu_system_seconds_total"); us > cpu+1 {
		t.Errorf("user+system %d s > usage %d s", us, cpu)
	}
	if p, th := cm.one(t, "container_cpu_cfs_periods_total"), cm.one(t, "container_cpu_cfs_throttled_periods_total"); th > p || p == 0 {
		t.Errorf("periods %d, throttled %d", p, th)
	}
	mem, ws := cm.one(t, "container_memory_usage_bytes"), cm.one(t, "container_memory_working_set_bytes")
	if mem == 0 || mem > 64<<20 || ws > mem || cm.one(t, "container_memory_rss") == 0 || cm.one(t, "container_memory_max_usage_bytes") < mem {
		t.Errorf("memory usage %d, working set %d, rss %d, max %d", mem, ws, cm.one(t, "container_memory_rss"), cm.one(t, "container_memory_max_usage_bytes"))
	}
	if f := cm["container_memory_failures_total"]; len(f) != 4 || f["pgfault,container"] == 0 || f["pgfault,hierarchy"] < f["pgfault,container"] {
		t.Errorf("memory failures %v", f)
	}
	if v := cm.one(t, "container_oom_events_total"); v != 0 {
		t.Errorf("oom events %d", v)
	}
	for name, want := range map[string]uint64{"container_spec_cpu_period": 100000, "container_spec_cpu_quota": 50000,
		"container_spec_cpu_shares": 512, "container_spec_memory_limit_bytes": 64 << 20} {
		if v := cm.one(t, name); v != want {
			t.Errorf("%s = %d, want %d", name, v, want)
		}
	}
	// sh and nc: a listening socket and at least stdio each.
	procs := cm.one(t, "container_processes")
	if procs < 2 || cm.one(t, "container_threads") < procs || cm.one(t, "container_file_descriptors") < 4 || cm.one(t, "container_sockets") < 1 {
		t.Errorf("processes %d, threads %d, fds %d, sockets %d", procs, cm.one(t, "container_threads"),
			cm.one(t, "container_file_descriptors"), cm.one(t, "container_sockets"))
	}
	limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", info.PID))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(limits)) {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			if soft, _ := strconv.ParseUint(strings.Fields(rest)[0], 10, 64); cm["container_ulimits_soft"]["max_open_files"] != soft {
				t.Errorf("ulimits %v, the init's soft limit %d", cm["container_ulimits_soft"], soft)
			}
		}
	}
	if len(cm["container_fs_usage_bytes"]) != 1 {
		t.Fatalf("fs usage %v", cm["container_fs_usage_bytes"])
	}
	for dev, used := range cm["container_fs_usage_bytes"] {
		limit, total, free := cm["container_fs_limit_bytes"][dev], cm["container_fs_inodes_total"][dev], cm["container_fs_inodes_free"][dev]
		if dev == "" || limit <= used || total < free || free == 0 {
			t.Errorf("fs on %q: used %d, limit %d, inodes %d, free %d", dev, used, limit, total, free)
		}
	}
}

// checkHandlerMetrics checks a running container's metrics as a runtime
// handler's stats path gives them: described, labelled, the cgroup's CPU
// and memory there, the /proc figures only for a task read on the host.
func checkHandlerMetrics(ctx context.Context, t *testing.T, rs internalapi.RuntimeService, podID, id string, viaShim bool) {
	t.Helper()
	descs, err := rs.ListMetricDescriptors(ctx)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string][]string{}
	for _, d := range descs {
		keys[d.Name] = d.LabelKeys
	}
	all, err := rs.ListPodSandboxMetrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ms []*runtimeapi.Metric
	for _, p := range all {
		for _, c := range p.GetContainerMetrics() {
			if p.PodSandboxId == podID && c.ContainerId == id {
				ms = c.Metrics
			}
		}
	}
	if len(ms) == 0 {
		t.Fatalf("no metrics of container %s in %v", id, all)
	}
	got := series{}
	for _, m := range ms {
		if k := keys[m.Name]; len(k) == 0 || len(k) != len(m.LabelValues) || m.LabelValues[3] != id {
			t.Errorf("%s: labels %q, keys %q", m.Name, m.LabelValues, k)
			continue
		}
		if got[m.Name] == nil {
			got[m.Name] = map[string]uint64{}
		}
		got[m.Name][strings.Join(m.LabelValues[len(metricsBaseLabels):], ",")] = m.GetValue().GetValue()
	}
	if got["container_memory_usage_bytes"][""] == 0 || got["container_cpu_usage_seconds_total"] == nil || got["container_last_seen"] == nil {
		t.Errorf("no CPU or memory figures: %v", got)
	}
	if _, ok := got["container_processes"]; ok == viaShim {
		t.Errorf("container_processes reported: %v (task sampled through its shim: %v)", ok, viaShim)
	}
}
