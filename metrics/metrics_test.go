package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/cri"
	"github.com/accel-cri/accel-cri/devices"
	"github.com/accel-cri/accel-cri/images"
	"github.com/accel-cri/accel-cri/sandbox"
	"github.com/accel-cri/accel-cri/sandbox/podnet"
)

// chain runs a unary handler behind the metrics interceptor and the CRI
// interceptor, in the order serve.go chains them.
func chain(m *Metrics, method string, h grpc.UnaryHandler) error {
	info := &grpc.UnaryServerInfo{FullMethod: method}
	_, err := m.UnaryInterceptor(context.Background(), nil, info, func(ctx context.Context, req any) (any, error) {
		return cri.UnaryInterceptor(ctx, req, info, h)
	})
	return err
}

func TestCRIInterceptors(t *testing.T) {
	tests := []struct {
		desc     string
		method   string
		err      error
		panics   bool
		wantCode string
	}{
		{desc: "success", method: "/runtime.v1.RuntimeService/Version", wantCode: "OK"},
		{desc: "domain NotFound mapped by the CRI interceptor", method: "/runtime.v1.RuntimeService/ContainerStatus", err: fmt.Errorf("container x: %w", errdefs.ErrNotFound), wantCode: "NotFound"},
		{desc: "status error kept", method: "/runtime.v1.ImageService/PullImage", err: status.Error(codes.Unavailable, "down"), wantCode: "Unavailable"},
		{desc: "panic recovered as Internal", method: "/runtime.v1.RuntimeService/RunPodSandbox", panics: true, wantCode: "Internal"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			m := New()
			err := chain(m, tc.method, func(context.Context, any) (any, error) {
				time.Sleep(2 * time.Millisecond)
				if tc.panics {
					panic("bug")
				}
				return "ok", tc.err
			})
			if status.Code(err).String() != tc.wantCode {
				t.Fatalf("call returned %v, want code %s", err, tc.wantCode)
			}
			short := tc.method[strings.LastIndex(tc.method, "/")+1:]
			if got := testutil.ToFloat64(m.criRequests.WithLabelValues(short, tc.wantCode)); got != 1 {
				t.Errorf("requests_total{method=%s,code=%s} = %v, want 1", short, tc.wantCode, got)
			}
			if n := testutil.CollectAndCount(m.criRequests); n != 1 {
				t.Errorf("%d request series, want exactly 1", n)
			}
			sum, count := histogram(t, m, "accel_cri_cri_request_duration_seconds", map[string]string{"method": short})
			if count != 1 || sum < 0.002 {
				t.Errorf("latency histogram count %d sum %v, want 1 call of >= 2ms", count, sum)
			}
		})
	}
}

type fakeStream struct{ grpc.ServerStream }

func TestStreamInterceptor(t *testing.T) {
	m := New()
	info := &grpc.StreamServerInfo{FullMethod: "/runtime.v1.RuntimeService/GetContainerEvents"}
	err := m.StreamInterceptor(nil, fakeStream{}, info, func(any, grpc.ServerStream) error {
		return status.Error(codes.Canceled, "client went away")
	})
	if status.Code(err) != codes.Canceled {
		t.Fatalf("err = %v", err)
	}
	if got := testutil.ToFloat64(m.criRequests.WithLabelValues("GetContainerEvents", "Canceled")); got != 1 {
		t.Fatalf("requests_total = %v, want 1", got)
	}
}

func TestObservePull(t *testing.T) {
	m := New()
	m.ObservePull("r/a:1", 1000, 2*time.Second, nil)
	m.ObservePull("r/b:1", 500, time.Second, nil)
	m.ObservePull("r/c:1", 0, time.Second, fmt.Errorf("pull: %w", errdefs.ErrNotFound))
	m.ObservePull("r/d:1", 0, time.Second, fmt.Errorf("pull: %w", errdefs.ErrUnauthenticated))
	m.ObservePull("r/e:1", 0, time.Second, fmt.Errorf("pull: %w", errdefs.ErrNotFound))

	want := `
# HELP accel_cri_image_pull_bytes_total Content size (manifest, config, layers) of the images pulled successfully.
# TYPE accel_cri_image_pull_bytes_total counter
accel_cri_image_pull_bytes_total 1500
# HELP accel_cri_image_pull_failures_total Failed image pulls by the gRPC code the failure maps to (NotFound, Unauthenticated, Unavailable, DeadlineExceeded, ...).
# TYPE accel_cri_image_pull_failures_total counter
accel_cri_image_pull_failures_total{code="NotFound"} 2
accel_cri_image_pull_failures_total{code="Unauthenticated"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "accel_cri_image_pull_bytes_total", "accel_cri_image_pull_failures_total"); err != nil {
		t.Fatal(err)
	}
	if sum, count := histogram(t, m, "accel_cri_image_pull_duration_seconds", map[string]string{"result": "success"}); count != 2 || sum != 3 {
		t.Errorf("success pulls: count %d sum %v, want 2 and 3s", count, sum)
	}
	if _, count := histogram(t, m, "accel_cri_image_pull_duration_seconds", map[string]string{"result": "failure"}); count != 3 {
		t.Errorf("failed pulls: count %d, want 3", count)
	}
}

func TestObserveSignature(t *testing.T) {
	m := New()
	var obs images.SignatureObserver = m
	obs.ObserveSignature(images.PhasePull, images.ResultVerified)
	obs.ObserveSignature(images.PhasePull, images.ResultVerified)
	obs.ObserveSignature(images.PhasePull, images.ResultRejected)
	obs.ObserveSignature(images.PhaseCreate, images.ResultError)
	want := `
# HELP accel_cri_image_signature_verifications_total Image signature policy decisions by phase (pull: PullImage; create: the re-check at CreateContainer) and result (verified, accepted without a signature, rejected, error: policy or signatures unreadable).
# TYPE accel_cri_image_signature_verifications_total counter
accel_cri_image_signature_verifications_total{phase="create",result="error"} 1
accel_cri_image_signature_verifications_total{phase="pull",result="rejected"} 1
accel_cri_image_signature_verifications_total{phase="pull",result="verified"} 2
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "accel_cri_image_signature_verifications_total"); err != nil {
		t.Fatal(err)
	}
}

func TestObserveCNI(t *testing.T) {
	m := New()
	var obs podnet.CNIObserver = m
	obs.ObserveCNI(podnet.CNISetup, 100*time.Millisecond, nil)
	obs.ObserveCNI(podnet.CNISetup, 300*time.Millisecond, nil)
	obs.ObserveCNI(podnet.CNISetup, time.Second, errors.New("no IP left"))
	obs.ObserveCNI(podnet.CNITeardown, 50*time.Millisecond, nil)
	tests := []struct {
		op, result string
		count      uint64
		sum        float64
	}{
		{"setup", "success", 2, 0.4},
		{"setup", "failure", 1, 1},
		{"teardown", "success", 1, 0.05},
	}
	for _, tc := range tests {
		sum, count := histogram(t, m, "accel_cri_cni_operation_duration_seconds", map[string]string{"op": tc.op, "result": tc.result})
		if count != tc.count || fmt.Sprintf("%.3f", sum) != fmt.Sprintf("%.3f", tc.sum) {
			t.Errorf("%s/%s: count %d sum %v, want %d and %v", tc.op, tc.result, count, sum, tc.count, tc.sum)
		}
	}
	if n := testutil.CollectAndCount(m.cniDuration); n != 3 {
		t.Errorf("%d CNI series, want 3", n)
	}
}

type fakeRuntime struct {
	pods []*runtimeapi.PodSandbox
	ctrs []*runtimeapi.Container
}

func (f fakeRuntime) ListPods(sandbox.PodFilter) []*runtimeapi.PodSandbox { return f.pods }
func (f fakeRuntime) ListContainers(sandbox.ContainerFilter) []*runtimeapi.Container {
	return f.ctrs
}

func TestStateCollector(t *testing.T) {
	rt := fakeRuntime{
		pods: []*runtimeapi.PodSandbox{
			{State: runtimeapi.PodSandboxState_SANDBOX_READY},
			{State: runtimeapi.PodSandboxState_SANDBOX_READY},
			{State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY},
		},
		ctrs: []*runtimeapi.Container{
			{State: runtimeapi.ContainerState_CONTAINER_RUNNING},
			{State: runtimeapi.ContainerState_CONTAINER_EXITED},
			{State: runtimeapi.ContainerState_CONTAINER_EXITED},
			{State: runtimeapi.ContainerState_CONTAINER_EXITED},
		},
	}
	m := New(WithRuntime(rt))
	want := `
# HELP accel_cri_containers Containers by CRI state (created, running, exited, unknown).
# TYPE accel_cri_containers gauge
accel_cri_containers{state="created"} 0
accel_cri_containers{state="exited"} 3
accel_cri_containers{state="running"} 1
accel_cri_containers{state="unknown"} 0
# HELP accel_cri_pods Pod sandboxes by CRI state (ready, notready).
# TYPE accel_cri_pods gauge
accel_cri_pods{state="notready"} 1
accel_cri_pods{state="ready"} 2
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "accel_cri_pods", "accel_cri_containers"); err != nil {
		t.Fatal(err)
	}
}

type fakeDevices []devices.Device

func (f fakeDevices) Devices() []devices.Device { return f }

func TestDeviceCollector(t *testing.T) {
	m := New(WithDevices(fakeDevices{
		{Class: devices.ClassIntelGPU, Name: "0", Health: devices.Healthy},
		{Class: devices.ClassIntelGPU, Name: "1", Health: devices.Unhealthy},
		{Class: devices.ClassIntelGPU, Name: "2", Health: devices.Healthy},
		{Class: devices.ClassFPGA, Name: "0"},
	}))
	want := `
# HELP accel_cri_devices Devices found by resource (CDI vendor/class, the device plugin's resource name) and health.
# TYPE accel_cri_devices gauge
accel_cri_devices{health="Healthy",resource="accel-cri.io/fpga"} 1
accel_cri_devices{health="Healthy",resource="accel-cri.io/intel-gpu"} 2
accel_cri_devices{health="Unhealthy",resource="accel-cri.io/fpga"} 0
accel_cri_devices{health="Unhealthy",resource="accel-cri.io/intel-gpu"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "accel_cri_devices"); err != nil {
		t.Fatal(err)
	}
}

type fakeDaemon struct{ restarts, pid int }

func (f *fakeDaemon) Restarts() int { return f.restarts }
func (f *fakeDaemon) PID() int      { return f.pid }

func TestContainerdCollector(t *testing.T) {
	d := &fakeDaemon{pid: 42}
	m := New(WithContainerd(d))
	check := func(restarts, up string) {
		t.Helper()
		want := fmt.Sprintf(`
# HELP accel_cri_containerd_restarts_total Times the managed containerd died and was restarted by accel-cri.
# TYPE accel_cri_containerd_restarts_total counter
accel_cri_containerd_restarts_total %s
# HELP accel_cri_containerd_up 1 while the managed containerd process runs, 0 while it is being restarted.
# TYPE accel_cri_containerd_up gauge
accel_cri_containerd_up %s
`, restarts, up)
		if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "accel_cri_containerd_restarts_total", "accel_cri_containerd_up"); err != nil {
			t.Fatal(err)
		}
	}
	check("0", "1")
	d.restarts, d.pid = 2, 0
	check("2", "0")
}

type fakeInjector struct{ err error }

func (f fakeInjector) Check([]string) error                     { return nil }
func (f fakeInjector) Inject(*runtimespec.Spec, []string) error { return f.err }

func TestCountAllocations(t *testing.T) {
	m := New()
	ok := m.CountAllocations(fakeInjector{})
	for _, names := range [][]string{
		{"accel-cri.io/intel-gpu=0", "accel-cri.io/fpga=all"},
		{"accel-cri.io/intel-gpu=1"},
		{"nvidia.com/gpu=GPU-abc"},
	} {
		if err := ok.Inject(&runtimespec.Spec{}, names); err != nil {
			t.Fatal(err)
		}
	}
	failing := m.CountAllocations(fakeInjector{err: errors.New("spec gone")})
	if err := failing.Inject(&runtimespec.Spec{}, []string{"accel-cri.io/intel-gpu=0"}); err == nil {
		t.Fatal("injector error lost")
	}
	want := `
# HELP accel_cri_device_allocations_total CDI devices given to containers at CreateContainer, by resource (CDI vendor/class).
# TYPE accel_cri_device_allocations_total counter
accel_cri_device_allocations_total{resource="accel-cri.io/fpga"} 1
accel_cri_device_allocations_total{resource="accel-cri.io/intel-gpu"} 2
accel_cri_device_allocations_total{resource="nvidia.com/gpu"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "accel_cri_device_allocations_total"); err != nil {
		t.Fatal(err)
	}
}

func TestServerScrapeAndClose(t *testing.T) {
	m := New(WithRuntime(fakeRuntime{}))
	m.ObserveCRI("/runtime.v1.RuntimeService/Version", time.Millisecond, nil)
	srv, err := Listen("127.0.0.1:0", m)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	t.Cleanup(func() { _ = srv.Close() })
	url := "http://" + srv.Addr().String() + "/metrics"
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	for _, want := range []string{
		"go_goroutines ",
		"process_open_fds ",
		`accel_cri_build_info{commit=`,
		`accel_cri_cri_requests_total{code="OK",method="Version"} 1`,
		`accel_cri_pods{state="ready"} 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	if resp, err := http.Get("http://" + srv.Addr().String() + "/other"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET /other: %s, want 404", resp.Status)
		}
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Close")
	}
	if _, err := http.Get(url); err == nil {
		t.Fatal("server still answers after Close")
	}
}

func TestListenBadAddress(t *testing.T) {
	if _, err := Listen("256.0.0.1:1", New()); err == nil {
		t.Fatal("want error")
	}
}

// histogram returns the sum and count of the histogram series of name
// whose labels include labels.
func histogram(t *testing.T, m *Metrics, name string, labels map[string]string) (float64, uint64) {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, s := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range s.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			return s.GetHistogram().GetSampleSum(), s.GetHistogram().GetSampleCount()
		}
	}
	return 0, 0
}
