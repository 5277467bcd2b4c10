package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// ffmpegJob transcodes a generated clip into /out: VAAPI on the first
// render node first (what a pod given a GPU sees as /dev/dri/renderD128),
// software (libx264) when VAAPI cannot start, and says which it used.
const ffmpegJob = "set -u\n" + framework.FFmpegEncode + "\nls -l /dev/dri"

func TestFFmpegJob(t *testing.T) {
	for _, b := range []string{"ffmpeg", "ffprobe", "ldd"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s not found: run hack/install-deps.sh (Debian ffmpeg)", b)
		}
	}
	e := startDeviceEnv(t, "")
	start := time.Now()
	img := framework.PushFFmpegImage(t, e.reg, "library/")
	ctx := ctxT(t, 10*time.Minute)
	if _, err := e.Images.PullImage(ctx, spec(img.Ref), nil, nil); err != nil {
		t.Fatal(err)
	}
	t.Logf("ffmpeg image built, pushed and pulled in %s", time.Since(start).Round(time.Second))

	out := filepath.Join(e.Dir, "media-out")
	if err := os.MkdirAll(out, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(out, 0o777)
	podID, pod := e.runPod(t, "media")
	c := nonRoot(framework.ContainerConfig("transcode", img.Ref, "sh", "-c", ffmpegJob))
	c.CDIDevices = []*runtimeapi.CDIDevice{{Name: "accel-cri.io/intel-gpu=0"}}
	c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/out", HostPath: out}}
	jobStart := time.Now()
	id := e.RunContainer(t, podID, pod, c)
	st := e.WaitContainer(t, id, exited, 3*time.Minute)
	log := framework.LogContent(t, logPath(pod, c))
	t.Logf("job ran in %s; log:\n%s", time.Since(jobStart).Round(time.Millisecond), log)
	if st.ExitCode != 0 {
		t.Fatalf("job exited %d (%s)", st.ExitCode, st.Reason)
	}
	if !strings.Contains(log, "encoder=") || !strings.Contains(log, "renderD128") {
		t.Errorf("job did not say which encoder it used or lacked the render node")
	}
	// This host has no GPU: the fake render node makes VAAPI fail, the job
	// falls back.
	if !strings.Contains(log, "encoder=software") {
		t.Errorf("expected the software fallback on a fake GPU")
	}
	probe, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames",
		"-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "default=nw=1", filepath.Join(out, "clip.mp4")).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe: %v\n%s", err, probe)
	}
	t.Logf("ffprobe:\n%s", probe)
	mustContain(t, string(probe), "codec_name=h264", "width=320", "height=240", "nb_read_frames=50")
}
