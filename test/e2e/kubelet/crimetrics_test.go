package kubelet

import (
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// Metrics kubelet serves on /metrics/cadvisor from ListPodSandboxMetrics
// when its PodAndContainerStatsFromCRI feature is on, as cAdvisor's: the
// type and the labels after pod, namespace, container, id, image.
var criMetricFamilies = map[string]struct {
	typ   dto.MetricType
	extra []string
	pod   bool // a pod-level series (container "")
}{
	"container_cpu_usage_seconds_total":         {dto.MetricType_COUNTER, []string{"cpu"}, false},
	"container_cpu_cfs_throttled_periods_total": {dto.MetricType_COUNTER, nil, false},
	"container_memory_working_set_bytes":        {dto.MetricType_GAUGE, nil, false},
	"container_memory_failures_total":           {dto.MetricType_COUNTER, []string{"failure_type", "scope"}, false},
	"container_spec_memory_limit_bytes":         {dto.MetricType_GAUGE, nil, false},
	"container_fs_usage_bytes":                  {dto.MetricType_GAUGE, []string{"device"}, false},
	"container_threads":                         {dto.MetricType_GAUGE, nil, false},
	"container_start_time_seconds":              {dto.MetricType_GAUGE, nil, false},
	"container_network_receive_bytes_total":     {dto.MetricType_COUNTER, []string{"interface"}, true},
	"container_network_transmit_packets_total":  {dto.MetricType_COUNTER, []string{"interface"}, true},
}

func TestKubeletCRIMetrics(t *testing.T) {
	bin := kubeletBinary(t, framework.ModuleRoot(t))
	kdir, err := os.MkdirTemp("", "acri-kubelet-")
	if err != nil {
		t.Fatal(err)
	}
	framework.MarkOwned(t, kdir)
	t.Cleanup(func() { os.RemoveAll(kdir) })
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	imgs := framework.PushTestImages(t, reg, "library/")
	a := framework.StartAccelCRI(t, framework.AccelCRIOptions{SandboxImage: imgs.Pause.Ref, WithCNI: true})
	k := NewKubelet(t, KubeletOptions{Bin: bin, Dir: kdir, Endpoint: "unix://" + a.Socket, CgroupRoot: a.CgroupRoot(),
		ExtraConfig: "featureGates:\n  PodAndContainerStatsFromCRI: true\n",
		Drained:     func() bool { return a.Runtime != nil && NoReadySandbox(a.Runtime)() }})

	const name = "metrics"
	k.WriteManifest(t, name, busyboxPod(name, imgs.Busybox.Ref,
		"while true; do i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; sleep 0.01; done", "",
		"    resources: {limits: {cpu: 200m, memory: 64Mi}}\n"))
	p := k.WaitPod(t, name, 2*time.Minute, "running", func(p *Pod) bool { return p != nil && p.AllRunning(1) })
	podName := name + "-" + NodeName

	// Scrape until kubelet shows the container's CPU (the pod's first
	// sample comes 100 ms after its start, the CPU second later).
	var fams map[string]*dto.MetricFamily
	deadline := time.Now().Add(90 * time.Second)
	for {
		fams = k.scrape(t, "/metrics/cadvisor")
		cpu := series(fams["container_cpu_usage_seconds_total"], podName, "main")
		if len(cpu) == 1 && cpu[0].GetCounter().GetValue() >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no CPU second of %s/main on /metrics/cadvisor after 90s: %v\nkubelet log:\n%s", podName, cpu, k.LogTail(30))
		}
		time.Sleep(time.Second)
	}
	for fam, want := range criMetricFamilies {
		f := fams[fam]
		if f == nil {
			t.Errorf("%s: not served", fam)
			continue
		}
		if f.GetType() != want.typ {
			t.Errorf("%s: type %v, want %v", fam, f.GetType(), want.typ)
		}
		ctr := "main"
		if want.pod {
			ctr = ""
		}
		got := series(f, podName, ctr)
		if len(got) == 0 {
			t.Errorf("%s: no series of %s container %q", fam, podName, ctr)
			continue
		}
		keys := []string{"container", "id", "image", "namespace", "pod"}
		keys = append(keys, want.extra...)
		slices.Sort(keys)
		for _, m := range got {
			var names []string
			for _, l := range m.GetLabel() {
				names = append(names, l.GetName())
				if l.GetName() == "namespace" && l.GetValue() != "e2e" {
					t.Errorf("%s: namespace %q", fam, l.GetValue())
				}
			}
			slices.Sort(names)
			if !slices.Equal(names, keys) {
				t.Errorf("%s: labels %v, want %v", fam, names, keys)
			}
		}
	}
	if v := series(fams["container_spec_memory_limit_bytes"], podName, "main"); len(v) != 1 || v[0].GetGauge().GetValue() != 64<<20 {
		t.Errorf("memory limit %v", v)
	}
	if start := series(fams["container_start_time_seconds"], podName, "main"); len(start) != 1 || start[0].GetGauge().GetValue() < float64(time.Now().Add(-5*time.Minute).Unix()) {
		t.Errorf("start time %v (pod %s)", start, p.Metadata.UID)
	}
	// kubelet drops a metric whose labels do not match its descriptor, or
	// that has no descriptor, with a log line.
	if log, _ := os.ReadFile(k.LogPath); strings.Contains(string(log), "Error getting CRI prometheus metric") {
		t.Errorf("kubelet could not convert a CRI metric:\n%s", k.LogTail(40))
	}
}

// series are the family's series of a pod's container ("" for the pod).
func series(f *dto.MetricFamily, pod, container string) []*dto.Metric {
	var out []*dto.Metric
	for _, m := range f.GetMetric() {
		var p, c string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "pod":
				p = l.GetValue()
			case "container":
				c = l.GetValue()
			}
		}
		if p == pod && c == container {
			out = append(out, m)
		}
	}
	return out
}

// scrape reads a kubelet metrics endpoint (TLS, client certificate).
func (k *Kubelet) scrape(t *testing.T, path string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := k.client.Get(fmt.Sprintf("https://127.0.0.1:%d%s", k.Port, path))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	return fams
}
