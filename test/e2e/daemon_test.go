package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

func TestRuntimeStatus(t *testing.T) {
	a := framework.StartAccelCRI(t, framework.AccelCRIOptions{})
	ctx := ctxT(t, 2*time.Minute)

	v, err := a.Runtime.Version(ctx, "v1")
	if err != nil {
		t.Fatal(err)
	}
	if v.RuntimeName != "accel-cri" || v.RuntimeApiVersion != "v1" || v.RuntimeVersion == "" {
		t.Fatalf("Version = %+v", v)
	}

	conds, err := a.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !conds[runtimeapi.RuntimeReady].Status {
		t.Fatalf("RuntimeReady false: %v", conds[runtimeapi.RuntimeReady])
	}
	net := conds[runtimeapi.NetworkReady]
	if net.Status || net.Reason != "NetworkPluginNotReady" || net.Message == "" {
		t.Fatalf("NetworkReady without CNI config = %+v, want false with a reason", net)
	}

	a.WriteCNIConfig(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		conds, err = a.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if conds[runtimeapi.NetworkReady].Status {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("NetworkReady still false after writing a conflist: %+v", conds[runtimeapi.NetworkReady])
		}
		time.Sleep(50 * time.Millisecond)
	}

	rc, err := a.Runtime.RuntimeConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := runtimeapi.CgroupDriver_CGROUPFS
	if b, _ := os.ReadFile("/proc/1/comm"); strings.TrimSpace(string(b)) == "systemd" {
		want = runtimeapi.CgroupDriver_SYSTEMD
	}
	if rc.GetLinux().GetCgroupDriver() != want {
		t.Fatalf("cgroup driver = %v, want %v", rc.GetLinux().GetCgroupDriver(), want)
	}

	st, err := a.Runtime.Status(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"config", "oomScoreAdj", "containerd", "cgroupDriver"} {
		if st.Info[k] == "" {
			t.Errorf("verbose Status lacks %q: %v", k, st.Info)
		}
	}
	if !strings.Contains(st.Info["containerd"], `"managed":true`) {
		t.Errorf("containerd info = %s", st.Info["containerd"])
	}
}

// The managed containerd is killed with SIGKILL: accel-cri keeps answering,
// reports the runtime not ready while it is down, restarts it and works again.
func TestManagedContainerdKilled(t *testing.T) {
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	imgs := framework.PushTestImages(t, reg, "library/")
	a := framework.StartAccelCRI(t, framework.AccelCRIOptions{})
	ctx := ctxT(t, 3*time.Minute)

	if _, err := a.Images.PullImage(ctx, spec(imgs.Pause.Ref), nil, nil); err != nil {
		t.Fatal(err)
	}
	first := a.ContainerdPID()
	if first == 0 {
		t.Fatal("no containerd pid file")
	}
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	sawNotReady := false
	deadline := time.Now().Add(60 * time.Second)
	for {
		// accel-cri itself must answer throughout.
		if _, err := a.Runtime.Version(ctx, "v1"); err != nil {
			t.Fatalf("Version while containerd restarts: %v", err)
		}
		conds, err := a.Status(ctx)
		if err != nil {
			t.Fatalf("Status while containerd restarts: %v", err)
		}
		if !conds[runtimeapi.RuntimeReady].Status {
			sawNotReady = true
		} else if pid := a.ContainerdPID(); pid != first && pid != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd not back: %v\n%s", conds[runtimeapi.RuntimeReady], a.LogTail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("containerd %d killed, restarted as %d (not-ready observed: %v)", first, a.ContainerdPID(), sawNotReady)

	// The image service reconnected: the index answers and a pull goes through.
	st, err := a.Images.ImageStatus(ctx, spec(imgs.Pause.Ref), false)
	if err != nil || st.Image == nil {
		t.Fatalf("ImageStatus after restart: %v %v", st, err)
	}
	if _, err := a.Images.PullImage(ctx, spec(imgs.Busybox.Ref), nil, nil); err != nil {
		t.Fatalf("pull after containerd restart: %v", err)
	}
}

func TestSocketAndShutdown(t *testing.T) {
	a := framework.StartAccelCRI(t, framework.AccelCRIOptions{})

	st, err := os.Stat(a.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Type() != os.ModeSocket || st.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode = %v, want socket 0660", st.Mode())
	}

	t.Run("second instance on a socket in use fails", func(t *testing.T) {
		dir, _ := os.MkdirTemp("", "acri-e2e-2nd-")
		defer os.RemoveAll(dir)
		out, err := exec.Command(framework.Binary(t), "--config", a.ConfigPath, "--socket", a.Socket,
			"--root", dir+"/root", "--state", dir+"/state", "--cni-conf-dir", dir+"/net.d").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "in use") {
			t.Fatalf("second instance: %v\n%s", err, out)
		}
		if _, err := os.Stat(dir + "/state/containerd"); err == nil {
			t.Fatal("second instance started a containerd before failing")
		}
	})

	t.Run("path that is not a socket is refused", func(t *testing.T) {
		dir, _ := os.MkdirTemp("", "acri-e2e-file-")
		defer os.RemoveAll(dir)
		p := filepath.Join(dir, "file.sock")
		os.WriteFile(p, []byte("keep"), 0o600)
		out, err := exec.Command(framework.Binary(t), "--config", a.ConfigPath, "--socket", p,
			"--root", dir+"/root", "--state", dir+"/state", "--cni-conf-dir", dir+"/net.d").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "not a socket") {
			t.Fatalf("got %v\n%s", err, out)
		}
		if b, _ := os.ReadFile(p); string(b) != "keep" {
			t.Fatal("file was changed")
		}
	})

	t.Run("SIGTERM stops serving, removes the socket and stops containerd", func(t *testing.T) {
		pid := a.ContainerdPID()
		if err := a.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := a.Wait(30 * time.Second); err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
		if _, err := os.Stat(a.Socket); !os.IsNotExist(err) {
			t.Fatalf("socket still present: %v", err)
		}
		if err := syscall.Kill(pid, 0); err == nil {
			if b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); !strings.Contains(string(b), ") Z") {
				t.Fatalf("managed containerd %d still running", pid)
			}
		}
	})

	t.Run("restart after SIGTERM", func(t *testing.T) {
		a.Start(t)
		if _, err := a.Runtime.Version(context.Background(), "v1"); err != nil {
			t.Fatal(err)
		}
	})
}

// The managed containerd dies while a container exits (it is stopped, so it
// cannot see the exit, then killed): accel-cri's supervisor reads the exit
// from the shim before it starts containerd again, which deletes the task,
// and the exit monitor's reconcile reports the container's own exit code.
func TestManagedContainerdKilledExit(t *testing.T) {
	e := startPodEnv(t)
	signals := filepath.Join(e.Dir, "exit-signals")
	podID, pod := e.runPod(t, "p")
	id := e.RunContainer(t, podID, pod, e.exitOnCue(t, "quits", signals, 9))
	pid := containerPID(t, e, id)

	ctrd := e.ContainerdPID()
	if err := syscall.Kill(ctrd, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	cueExit(t, signals, pid)
	if err := syscall.Kill(ctrd, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}

	st := e.WaitContainer(t, id, exited, 90*time.Second)
	if st.ExitCode != 9 || st.Reason != "Error" {
		t.Errorf("container that exited while containerd was down: exit %d reason %q message %q, want 9 Error\n%s",
			st.ExitCode, st.Reason, st.Message, e.LogTail(30))
	}
	if fin := time.Unix(0, st.FinishedAt); fin.Before(killed) || fin.After(time.Now()) {
		t.Errorf("finished at %s, containerd stopped at %s", fin, killed)
	}
	if e.ContainerdPID() == ctrd {
		t.Error("containerd not restarted")
	}
	if _, err := os.Stat(filepath.Join(e.State, "sandbox", "containers", id, "exit.json")); !os.IsNotExist(err) {
		t.Errorf("kept exit left after it was reported: %v", err)
	}
}
