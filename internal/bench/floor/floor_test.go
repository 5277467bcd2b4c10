package floor

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/google/go-cmp/cmp"
)

// lister answers like a runtime with two pods, each with one container
// and stats, the way accel-cri would.
type lister struct{ calls int }

func (l *lister) ListPodSandbox(context.Context, *runtimeapi.PodSandboxFilter) ([]*runtimeapi.PodSandbox, error) {
	l.calls++
	return []*runtimeapi.PodSandbox{
		{Id: "p1", Metadata: &runtimeapi.PodSandboxMetadata{Name: "a", Uid: "u1", Namespace: "ns"}, State: runtimeapi.PodSandboxState_SANDBOX_READY,
			Labels: map[string]string{"io.kubernetes.pod.name": "a"}, Annotations: map[string]string{"k": "v"}},
		{Id: "p2", Metadata: &runtimeapi.PodSandboxMetadata{Name: "b", Uid: "u2", Namespace: "ns"}},
	}, nil
}

func (l *lister) ListContainers(context.Context, *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error) {
	l.calls++
	return []*runtimeapi.Container{{Id: "c1", PodSandboxId: "p1", State: runtimeapi.ContainerState_CONTAINER_RUNNING}, {Id: "c2", PodSandboxId: "p2"}}, nil
}

func (l *lister) ListContainerStats(context.Context, *runtimeapi.ContainerStatsFilter) ([]*runtimeapi.ContainerStats, error) {
	l.calls++
	return []*runtimeapi.ContainerStats{{Attributes: &runtimeapi.ContainerAttributes{Id: "c1"},
		Cpu: &runtimeapi.CpuUsage{Timestamp: 1, UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: 42}}}}, nil
}

func (l *lister) ListPodSandboxStats(context.Context, *runtimeapi.PodSandboxStatsFilter) ([]*runtimeapi.PodSandboxStats, error) {
	l.calls++
	return []*runtimeapi.PodSandboxStats{{Attributes: &runtimeapi.PodSandboxAttributes{Id: "p1", Labels: map[string]string{"x": "y"}}}}, nil
}

func serve(t *testing.T, a *Answers) runtimeapi.RuntimeServiceClient {
	t.Helper()
	g, err := NewServer(a)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "floor-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "cri.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); _ = g.Serve(lis) }()
	t.Cleanup(func() { g.Stop(); <-served })
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return runtimeapi.NewRuntimeServiceClient(conn)
}

// The floor answers each List call with exactly what the runtime
// answered, from files, and nothing else.
func TestServerAnswersWhatWasCaptured(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l := &lister{}
	captured, err := Capture(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	if l.calls != 4 {
		t.Fatalf("Capture made %d calls, want 4", l.calls)
	}
	dir := t.TempDir()
	if err := captured.Write(dir); err != nil {
		t.Fatal(err)
	}
	a, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(a, captured) {
		t.Fatalf("read back %+v, wrote %+v", a, captured)
	}
	c := serve(t, a)

	pods, _ := l.ListPodSandbox(ctx, nil)
	ctrs, _ := l.ListContainers(ctx, nil)
	cst, _ := l.ListContainerStats(ctx, nil)
	pst, _ := l.ListPodSandboxStats(ctx, nil)
	for i := 0; i < 2; i++ { // the same bytes every time
		gotPods, err := c.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
		if err != nil {
			t.Fatal(err)
		}
		gotCtrs, err := c.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		gotCst, err := c.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		gotPst, err := c.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{
			cmp.Diff(&runtimeapi.ListPodSandboxResponse{Items: pods}, gotPods, protocmp.Transform()),
			cmp.Diff(&runtimeapi.ListContainersResponse{Containers: ctrs}, gotCtrs, protocmp.Transform()),
			cmp.Diff(&runtimeapi.ListContainerStatsResponse{Stats: cst}, gotCst, protocmp.Transform()),
			cmp.Diff(&runtimeapi.ListPodSandboxStatsResponse{Stats: pst}, gotPst, protocmp.Transform()),
		} {
			if d != "" {
				t.Errorf("answer differs (-captured +served):\n%s", d)
			}
		}
	}
	if v, err := c.Version(ctx, &runtimeapi.VersionRequest{}); err != nil || v.GetRuntimeName() != "cri-floor" {
		t.Errorf("Version: %v, %v", v, err)
	}
	_, err = c.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("RunPodSandbox: %v, want Unimplemented", err)
	}
}

// An empty runtime's answers are empty messages, and still served.
func TestServerEmptyAnswers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := serve(t, &Answers{})
	got, err := c.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil || len(got.GetItems()) != 0 {
		t.Fatalf("ListPodSandbox: %v, %v", got, err)
	}
}

func TestNewServerRejectsBadAnswers(t *testing.T) {
	good, err := proto.Marshal(&runtimeapi.ListPodSandboxResponse{Items: []*runtimeapi.PodSandbox{{Id: "p"}}})
	if err != nil {
		t.Fatal(err)
	}
	for name, a := range map[string]*Answers{
		"truncated": {PodSandboxes: good[:len(good)-1]},
		"garbage":   {ContainerStats: []byte{0xff, 0xff, 0xff}},
	} {
		if _, err := NewServer(a); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestReadMissingAnswer(t *testing.T) {
	dir := t.TempDir()
	if err := (&Answers{}).Write(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "ListContainerStats.pb")); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(dir); err == nil || !strings.Contains(err.Error(), "ListContainerStats.pb") {
		t.Errorf("Read without one answer: %v", err)
	}
}
