package devices

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/accel-cri/accel-cri/devices/devicetest"
)

func baseSpec() *runtimespec.Spec {
	return &runtimespec.Spec{
		Process: &runtimespec.Process{User: runtimespec.User{UID: 1000, GID: 1000}, Env: []string{"PATH=/bin", "LD_LIBRARY_PATH=/opt/app/lib"}},
		Linux: &runtimespec.Linux{Resources: &runtimespec.LinuxResources{
			Devices: []runtimespec.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
		}},
	}
}

func TestInject(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	h := devicetest.NewHost(t, dir)
	h.AddDRMGPU(igpu)
	h.AddDRMGPU(dgpu)
	specDir := filepath.Join(dir, "cdi")
	m := New(WithSysfsRoot(h.Sysfs), WithDevRoot(h.Dev), WithNVMLLibrary("/nonexistent/libnvidia-ml.so.1"), WithCDIDir(specDir))
	if err := m.Refresh(); err != nil {
		t.Fatal(err)
	}
	otherDir := filepath.Join(dir, "etc-cdi")
	os.MkdirAll(otherDir, 0o755)
	os.WriteFile(filepath.Join(otherDir, "broken.json"), []byte(`{"cdiVersion": "0.6.0", "kind": "broken.example/x", "devices": [`), 0o644)
	os.WriteFile(filepath.Join(otherDir, "other.yaml"), []byte("cdiVersion: 0.6.0\nkind: vendor.example/thing\ndevices:\n- name: x\n  containerEdits:\n    env: [THING=x]\n"), 0o644)

	inj, err := NewInjector([]string{otherDir, specDir})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("second GPU first: renumbered, groups, exact cgroup rules", func(t *testing.T) {
		s := baseSpec()
		if err := inj.Inject(s, []string{"accel-cri.io/intel-gpu=1", "accel-cri.io/intel-gpu=0"}); err != nil {
			t.Fatal(err)
		}
		paths := map[string]string{}
		for _, d := range s.Linux.Devices {
			paths[d.Path] = filepath.Base(d.Path)
			if *d.UID != 0 || *d.GID == 1000 {
				t.Errorf("%s owner %d:%d, want the host's", d.Path, *d.UID, *d.GID)
			}
		}
		if len(s.Linux.Devices) != 4 {
			t.Errorf("devices %+v", s.Linux.Devices)
		}
		// card1/renderD129 (GPU 1) are now card0/renderD128: find them by
		// their owner group, which is the same; check via the order.
		if s.Linux.Devices[0].Path != "/dev/dri/card0" || s.Linux.Devices[1].Path != "/dev/dri/renderD128" ||
			s.Linux.Devices[2].Path != "/dev/dri/card1" || s.Linux.Devices[3].Path != "/dev/dri/renderD129" {
			t.Errorf("paths in request order: %v", paths)
		}
		rules := s.Linux.Resources.Devices
		if len(rules) != 5 || rules[0].Allow {
			t.Errorf("cgroup rules %+v", rules)
		}
		for _, r := range rules[1:] {
			if !r.Allow || r.Type != "c" || *r.Major != 1 || *r.Minor != 3 || r.Access != "rw" {
				t.Errorf("rule %+v", r)
			}
		}
		gids := s.Process.User.AdditionalGids
		if !slices.Contains(gids, gidRender) || !slices.Contains(gids, gidVideo) {
			t.Errorf("additional gids %v", gids)
		}
		if got := envValue(s.Process.Env, "LD_LIBRARY_PATH"); got != "/opt/app/lib" {
			t.Errorf("LD_LIBRARY_PATH %q", got)
		}
	})

	t.Run("ownership from the security context", func(t *testing.T) {
		inj2, _ := NewInjector([]string{specDir}, WithOwnershipFromSecurityContext(true))
		// GPU 1 alone is renumbered to card0/renderD128: its nodes are
		// owned all the same.
		for _, name := range []string{"accel-cri.io/intel-gpu=0", "accel-cri.io/intel-gpu=1"} {
			s := baseSpec()
			if err := inj2.Inject(s, []string{name}); err != nil {
				t.Fatal(err)
			}
			if len(s.Linux.Devices) != 2 {
				t.Errorf("%s: devices %+v", name, s.Linux.Devices)
			}
			for _, d := range s.Linux.Devices {
				if *d.UID != 1000 || *d.GID != 1000 {
					t.Errorf("%s: %s owner %d:%d", name, d.Path, *d.UID, *d.GID)
				}
			}
		}
	})

	t.Run("another vendor's spec next to a malformed one", func(t *testing.T) {
		s := baseSpec()
		if err := inj.Inject(s, []string{"vendor.example/thing=x"}); err != nil {
			t.Fatal(err)
		}
		if envValue(s.Process.Env, "THING") != "x" {
			t.Errorf("env %v", s.Process.Env)
		}
	})

	t.Run("unknown device: NotFound naming the malformed spec", func(t *testing.T) {
		s := baseSpec()
		err := inj.Inject(s, []string{"accel-cri.io/intel-gpu=7"})
		if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), `"accel-cri.io/intel-gpu=7"`) || !strings.Contains(err.Error(), "broken.json") {
			t.Errorf("error %v", err)
		}
		if len(s.Linux.Devices) != 0 {
			t.Errorf("spec changed: %+v", s.Linux.Devices)
		}
	})

	t.Run("names from the field and annotations", func(t *testing.T) {
		names, err := Names([]string{"accel-cri.io/intel-gpu=0"}, map[string]string{"cdi.k8s.io/plugin_x": "accel-cri.io/intel-gpu=1,accel-cri.io/intel-gpu=0", "other": "y"})
		if err != nil || strings.Join(names, " ") != "accel-cri.io/intel-gpu=0 accel-cri.io/intel-gpu=1" {
			t.Errorf("names %v %v", names, err)
		}
		if _, err := Names(nil, map[string]string{"cdi.k8s.io/x": "not-a-cdi-name"}); !errdefs.IsInvalidArgument(err) {
			t.Errorf("bad annotation: %v", err)
		}
	})
}

func TestRenameDRM(t *testing.T) {
	devs := []runtimespec.LinuxDevice{{Path: "/dev/dri/card2"}, {Path: "/dev/dri/renderD130"}, {Path: "/dev/nvidia0"}, {Path: "/dev/dri/renderD128"}}
	renameDRM(devs, []string{"/dev/dri/card2", "/dev/dri/renderD130", "/dev/nvidia0", "/dev/dri/renderD128"})
	var got []string
	for _, d := range devs {
		got = append(got, d.Path)
	}
	if strings.Join(got, " ") != "/dev/dri/card0 /dev/dri/renderD128 /dev/nvidia0 /dev/dri/renderD129" {
		t.Errorf("renamed %v", got)
	}
}
