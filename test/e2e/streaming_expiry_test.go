package e2e

import (
	"io"
	"net/http"
	"testing"
	"time"

	"k8s.io/client-go/tools/remotecommand"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// A stream URL whose token was never used expires with the streaming
// library's token lifetime (one minute, not configurable): using it later is
// refused by the stream server. The pod uses the host network, so this test
// needs no CNI.
func TestStreamingTokenExpiry(t *testing.T) {
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	imgs := framework.PushTestImages(t, reg, "library/")
	a := framework.StartAccelCRI(t, framework.AccelCRIOptions{SandboxImage: imgs.Pause.Ref})
	ctx := ctxT(t, 5*time.Minute)
	if _, err := a.Images.PullImage(ctx, spec(imgs.Busybox.Ref), nil, nil); err != nil {
		t.Fatal(err)
	}
	pod := a.PodConfig(t, "expiry")
	pod.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
	pod.DnsConfig = nil
	podID, err := a.Runtime.RunPodSandbox(ctx, pod, "")
	if err != nil {
		t.Fatal(err)
	}
	id := a.RunContainer(t, podID, pod, framework.ContainerConfig("sleeper", imgs.Busybox.Ref, "sleep", "3600"))

	fresh, err := a.Runtime.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"true"}, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	stale, err := a.Runtime.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"true"}, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	// A fresh token works, so the refusal below is the expiry's doing.
	if err := streamCtx(t, spdyExec(t, fresh.Url), remotecommand.StreamOptions{Stdout: io.Discard}); err != nil {
		t.Fatalf("fresh token: %v", err)
	}
	time.Sleep(61 * time.Second)
	r, err := http.Post(stale.Url, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusNotFound {
		t.Fatalf("expired token: HTTP %d, want 404", r.StatusCode)
	}
	if err := streamCtx(t, spdyExec(t, stale.Url), remotecommand.StreamOptions{Stdout: io.Discard}); err == nil {
		t.Fatal("expired token: stream succeeded")
	}
}
