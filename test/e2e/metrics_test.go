package e2e

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/devices/devicetest"
	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// scrape reads url and parses the Prometheus text format.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape %s: %s: %s", url, resp.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse scrape: %v", err)
	}
	return mfs
}

// sample is the value of the series of family name with exactly these
// labels (for a histogram: its count); ok is false when there is none.
func sample(mfs map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	mf, ok := mfs[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		for _, l := range m.GetLabel() {
			if labels[l.GetName()] != l.GetValue() {
				continue next
			}
		}
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		case m.GetHistogram() != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		case m.GetUntyped() != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

type want struct {
	name    string
	labels  map[string]string
	value   float64
	atLeast bool // value is a lower bound
}

func checkSamples(t *testing.T, mfs map[string]*dto.MetricFamily, wants []want) {
	t.Helper()
	for _, w := range wants {
		got, ok := sample(mfs, w.name, w.labels)
		switch {
		case !ok:
			t.Errorf("no series %s%v", w.name, w.labels)
		case w.atLeast && got < w.value:
			t.Errorf("%s%v = %v, want at least %v", w.name, w.labels, got, w.value)
		case !w.atLeast && got != w.value:
			t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.value)
		}
	}
}

func l(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func TestMetricsScrape(t *testing.T) {
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	imgs := framework.PushTestImages(t, reg, "library/")
	port, err := framework.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	// One fake Intel GPU, found by discovery and given to the container.
	dir := t.TempDir()
	host := devicetest.NewHost(t, dir)
	host.AddDRMGPU(fakeGPU0)
	a := framework.StartAccelCRI(t, framework.AccelCRIOptions{
		SandboxImage: imgs.Pause.Ref,
		WithCNI:      true,
		Config:       host.AccelCRIConfig(filepath.Join(dir, "cdi"), ""),
		ExtraArgs:    []string{"--metrics-address", fmt.Sprintf("127.0.0.1:%d", port)},
	})
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	ctx := ctxT(t, 5*time.Minute)

	if _, err := a.Images.PullImage(ctx, spec(imgs.Busybox.Ref), nil, nil); err != nil {
		t.Fatal(err)
	}
	// One failing pull and one failing call.
	if _, err := a.Images.PullImage(ctx, spec(reg.Host()+"/library/absent:1"), nil, nil); status.Code(err) != codes.NotFound {
		t.Fatalf("pull of an absent image: %v, want NotFound", err)
	}
	if _, err := a.Runtime.ContainerStatus(ctx, strings.Repeat("ab", 32), false); status.Code(err) != codes.NotFound {
		t.Fatalf("ContainerStatus of an unknown container: %v, want NotFound", err)
	}

	pod := a.PodConfig(t, "metrics")
	// A shared PID namespace needs a pause container, so RunPodSandbox
	// pulls the sandbox image and its pull is counted as well.
	pod.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
	podID, err := a.Runtime.RunPodSandbox(ctx, pod, "")
	if err != nil {
		t.Fatalf("RunPodSandbox: %v\n%s", err, a.LogTail(20))
	}
	ctr := framework.ContainerConfig("sleeper", imgs.Busybox.Ref, "sleep", "3600")
	ctr.CDIDevices = []*runtimeapi.CDIDevice{{Name: "accel-cri.io/intel-gpu=0"}}
	a.RunContainer(t, podID, pod, ctr)

	var pulled float64
	for _, ref := range []string{imgs.Busybox.Ref, imgs.Pause.Ref} {
		st, err := a.Images.ImageStatus(ctx, spec(ref), false)
		if err != nil || st.GetImage() == nil {
			t.Fatalf("ImageStatus %s: %v", ref, err)
		}
		pulled += float64(st.GetImage().GetSize())
	}

	mfs := scrape(t, url)
	checkSamples(t, mfs, []want{
		{name: "accel_cri_cri_requests_total", labels: l("method", "PullImage", "code", "OK"), value: 1},
		{name: "accel_cri_cri_requests_total", labels: l("method", "PullImage", "code", "NotFound"), value: 1},
		{name: "accel_cri_cri_requests_total", labels: l("method", "ContainerStatus", "code", "NotFound"), value: 1},
		{name: "accel_cri_cri_requests_total", labels: l("method", "RunPodSandbox", "code", "OK"), value: 1},
		{name: "accel_cri_cri_requests_total", labels: l("method", "StartContainer", "code", "OK"), value: 1},
		{name: "accel_cri_cri_request_duration_seconds", labels: l("method", "RunPodSandbox"), value: 1},
		{name: "accel_cri_pods", labels: l("state", "ready"), value: 1},
		{name: "accel_cri_pods", labels: l("state", "notready"), value: 0},
		{name: "accel_cri_containers", labels: l("state", "running"), value: 1},
		{name: "accel_cri_containers", labels: l("state", "exited"), value: 0},
		// busybox by PullImage, the pause image by RunPodSandbox.
		{name: "accel_cri_image_pull_duration_seconds", labels: l("result", "success"), value: 2},
		{name: "accel_cri_image_pull_duration_seconds", labels: l("result", "failure"), value: 1},
		{name: "accel_cri_image_pull_bytes_total", labels: l(), value: pulled},
		{name: "accel_cri_image_pull_failures_total", labels: l("code", "NotFound"), value: 1},
		{name: "accel_cri_cni_operation_duration_seconds", labels: l("op", "setup", "result", "success"), value: 1},
		{name: "accel_cri_device_allocations_total", labels: l("resource", "accel-cri.io/intel-gpu"), value: 1},
		{name: "accel_cri_devices", labels: l("resource", "accel-cri.io/intel-gpu", "health", "Healthy"), value: 1},
		{name: "accel_cri_devices", labels: l("resource", "accel-cri.io/intel-gpu", "health", "Unhealthy"), value: 0},
		{name: "accel_cri_containerd_restarts_total", labels: l(), value: 0},
		{name: "accel_cri_containerd_up", labels: l(), value: 1},
		{name: "go_goroutines", labels: l(), value: 1, atLeast: true},
		{name: "process_resident_memory_bytes", labels: l(), value: 1, atLeast: true},
	})
	if _, ok := mfs["accel_cri_build_info"]; !ok {
		t.Error("no accel_cri_build_info")
	}
	if t.Failed() {
		t.Logf("accel-cri log:\n%s", a.LogTail(30))
	}

	// Stopping the pod tears its network down and leaves it not ready.
	if err := a.Runtime.StopPodSandbox(ctx, podID); err != nil {
		t.Fatal(err)
	}
	mfs = scrape(t, url)
	checkSamples(t, mfs, []want{
		{name: "accel_cri_cni_operation_duration_seconds", labels: l("op", "teardown", "result", "success"), value: 1},
		{name: "accel_cri_pods", labels: l("state", "ready"), value: 0},
		{name: "accel_cri_pods", labels: l("state", "notready"), value: 1},
		{name: "accel_cri_containers", labels: l("state", "running"), value: 0},
		{name: "accel_cri_containers", labels: l("state", "exited"), value: 1},
		{name: "accel_cri_cri_requests_total", labels: l("method", "StopPodSandbox", "code", "OK"), value: 1},
	})

	// The managed containerd (this test's own, a child of its accel-cri)
	// dies: the restart is counted.
	first := a.ContainerdPID()
	if first == 0 {
		t.Fatal("no containerd pid file")
	}
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	deadline := killed.Add(time.Minute)
	for {
		mfs = scrape(t, url)
		restarts, _ := sample(mfs, "accel_cri_containerd_restarts_total", l())
		up, _ := sample(mfs, "accel_cri_containerd_up", l())
		if restarts == 1 && up == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after killing containerd: restarts_total %v, up %v\n%s", restarts, up, a.LogTail(20))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("containerd restart counted %s after the kill", time.Since(killed).Round(time.Millisecond))
	// containerd_up says the process runs, not that it serves yet: the
	// cleanup's RemovePodSandbox needs it serving (on a loaded machine the
	// new containerd takes seconds to open its socket), so wait for
	// RuntimeReady, the readiness kubelet itself waits for.
	for {
		conds, err := a.Status(ctx)
		if err != nil {
			t.Fatalf("Status after the containerd restart: %v", err)
		}
		if conds[runtimeapi.RuntimeReady].Status {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd not serving again a minute after the kill: %v\n%s", conds[runtimeapi.RuntimeReady], a.LogTail(20))
		}
		time.Sleep(100 * time.Millisecond)
	}

	if !strings.Contains(a.LogTail(200), "Serving metrics") {
		t.Error("the log does not say where metrics are served")
	}
}
