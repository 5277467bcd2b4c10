package nri

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/nri/pkg/api"
	"github.com/google/go-cmp/cmp"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
)

// baseSpec is a container spec as accel-cri builds one, cut down.
func baseSpec() *rspec.Spec {
	shares := uint64(1024)
	return &rspec.Spec{
		Process: &rspec.Process{
			Args:    []string{"/bin/sh"},
			Env:     []string{"PATH=/bin", "KEEP=1", "DROP=1"},
			Rlimits: []rspec.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
		},
		Mounts: []rspec.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/etc/hosts", Type: "bind", Source: "/pod/hosts", Options: []string{"rbind", "ro"}},
		},
		Annotations: map[string]string{"io.kubernetes.cri.sandbox-id": "pod1", "user/a": "1"},
		Linux: &rspec.Linux{
			CgroupsPath: "/accel-cri/c1",
			Resources:   &rspec.LinuxResources{CPU: &rspec.LinuxCPU{Shares: &shares}},
		},
	}
}

func TestAdjusterApply(t *testing.T) {
	limit := int64(64 << 20)
	for _, tc := range []struct {
		desc   string
		adjust func(a *api.ContainerAdjustment)
		fix    func(*rspec.LinuxResources) error
		check  func(t *testing.T, s *rspec.Spec)
	}{
		{
			desc: "env: added, replaced and removed",
			adjust: func(a *api.ContainerAdjustment) {
				a.AddEnv("NRI", "yes")
				a.AddEnv("KEEP", "2")
				a.RemoveEnv("DROP")
			},
			check: func(t *testing.T, s *rspec.Spec) {
				if want := []string{"PATH=/bin", "KEEP=2", "NRI=yes"}; !slices.Equal(s.Process.Env, want) {
					t.Errorf("env = %v; want %v", s.Process.Env, want)
				}
			},
		},
		{
			desc: "mount added, sorted by depth, one removed",
			adjust: func(a *api.ContainerAdjustment) {
				a.AddMount(&api.Mount{Destination: "/data/nri", Source: "/srv/nri", Type: "bind", Options: []string{"rbind", "ro"}})
				a.RemoveMount("/etc/hosts")
			},
			check: func(t *testing.T, s *rspec.Spec) {
				var dests []string
				for _, m := range s.Mounts {
					dests = append(dests, m.Destination)
				}
				if want := []string{"/proc", "/data/nri"}; !slices.Equal(dests, want) {
					t.Errorf("mounts = %v; want %v", dests, want)
				}
			},
		},
		{
			desc: "annotations of users may change",
			adjust: func(a *api.ContainerAdjustment) {
				a.AddAnnotation("nri/b", "2")
				a.RemoveAnnotation("user/a")
			},
			check: func(t *testing.T, s *rspec.Spec) {
				want := map[string]string{"io.kubernetes.cri.sandbox-id": "pod1", "nri/b": "2"}
				if diff := cmp.Diff(want, s.Annotations); diff != "" {
					t.Errorf("annotations (-want +got):\n%s", diff)
				}
			},
		},
		{
			desc: "device added with its cgroup rule",
			adjust: func(a *api.ContainerAdjustment) {
				a.AddDevice(&api.LinuxDevice{Path: "/dev/nri0", Type: "c", Major: 10, Minor: 200, FileMode: api.FileMode(0o660)})
			},
			check: func(t *testing.T, s *rspec.Spec) {
				if len(s.Linux.Devices) != 1 || s.Linux.Devices[0].Path != "/dev/nri0" {
					t.Fatalf("devices = %+v; want /dev/nri0", s.Linux.Devices)
				}
				rules := s.Linux.Resources.Devices
				if len(rules) != 1 || !rules[0].Allow || *rules[0].Major != 10 || *rules[0].Minor != 200 || rules[0].Access != "rw" {
					t.Errorf("device rules = %+v; want allow c 10:200 rw", rules)
				}
			},
		},
		{
			desc:   "rlimit of a type the container has replaces it",
			adjust: func(a *api.ContainerAdjustment) { a.AddRlimit("RLIMIT_NOFILE", 4096, 2048) },
			check: func(t *testing.T, s *rspec.Spec) {
				want := []rspec.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 4096, Soft: 2048}}
				if diff := cmp.Diff(want, s.Process.Rlimits); diff != "" {
					t.Errorf("rlimits (-want +got):\n%s", diff)
				}
			},
		},
		{
			desc: "hooks",
			adjust: func(a *api.ContainerAdjustment) {
				a.AddHooks(&api.Hooks{CreateRuntime: []*api.Hook{{Path: "/usr/bin/nri-hook", Args: []string{"nri-hook", "create"}}}})
			},
			check: func(t *testing.T, s *rspec.Spec) {
				if s.Hooks == nil || len(s.Hooks.CreateRuntime) != 1 || s.Hooks.CreateRuntime[0].Path != "/usr/bin/nri-hook" {
					t.Errorf("hooks = %+v; want the createRuntime hook", s.Hooks)
				}
			},
		},
		{
			desc: "resources go through the host fixup",
			adjust: func(a *api.ContainerAdjustment) {
				a.SetLinuxCPUSetCPUs("0-1")
				a.SetLinuxMemoryLimit(limit)
			},
			fix: func(r *rspec.LinuxResources) error { r.Memory.Swap = nil; return nil },
			check: func(t *testing.T, s *rspec.Spec) {
				r := s.Linux.Resources
				if r.CPU.Cpus != "0-1" || *r.CPU.Shares != 1024 {
					t.Errorf("cpu = %+v; want cpus 0-1, shares kept", r.CPU)
				}
				if r.Memory == nil || r.Memory.Limit == nil || *r.Memory.Limit != limit || r.Memory.Swap != nil {
					t.Errorf("memory = %+v; want limit %d and no swap (fixed up)", r.Memory, limit)
				}
			},
		},
		{
			desc: "cgroups path and oom score",
			adjust: func(a *api.ContainerAdjustment) {
				a.SetLinuxCgroupsPath("/nri/c1")
				adj := 500
				a.SetLinuxOomScoreAdj(&adj)
			},
			check: func(t *testing.T, s *rspec.Spec) {
				if s.Linux.CgroupsPath != "/nri/c1" || s.Process.OOMScoreAdj == nil || *s.Process.OOMScoreAdj != 500 {
					t.Errorf("cgroups path %q, oom %v; want /nri/c1, 500", s.Linux.CgroupsPath, s.Process.OOMScoreAdj)
				}
			},
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			a := &api.ContainerAdjustment{}
			tc.adjust(a)
			s := baseSpec()
			if err := (adjuster{fixResources: tc.fix}).apply(s, a); err != nil {
				t.Fatalf("apply: %v", err)
			}
			tc.check(t, s)
		})
	}
}

// Adjustments that would break the spec, or reach what the runtime owns,
// are refused as InvalidArgument (or the class of the step that refused
// them) and leave the request failed.
func TestAdjusterRefuses(t *testing.T) {
	for _, tc := range []struct {
		desc   string
		adjust func(a *api.ContainerAdjustment)
		adj    adjuster
		class  error
		msg    string
	}{
		{"relative mount destination", func(a *api.ContainerAdjustment) {
			a.AddMount(&api.Mount{Destination: "data", Source: "/srv", Type: "bind"})
		}, adjuster{}, errdefs.ErrInvalidArgument, "absolute clean path"},
		{"mount without source or type", func(a *api.ContainerAdjustment) {
			a.AddMount(&api.Mount{Destination: "/data"})
		}, adjuster{}, errdefs.ErrInvalidArgument, "neither a source nor a type"},
		{"env name with =", func(a *api.ContainerAdjustment) { a.AddEnv("A=B", "c") }, adjuster{}, errdefs.ErrInvalidArgument, "not a valid name"},
		{"device outside /dev", func(a *api.ContainerAdjustment) {
			a.AddDevice(&api.LinuxDevice{Path: "/etc/shadow", Type: "c", Major: 1, Minor: 1})
		}, adjuster{}, errdefs.ErrInvalidArgument, "under /dev"},
		{"device of unknown type", func(a *api.ContainerAdjustment) {
			a.AddDevice(&api.LinuxDevice{Path: "/dev/x", Type: "z"})
		}, adjuster{}, errdefs.ErrInvalidArgument, "not one of c, b, u, p"},
		{"unknown rlimit", func(a *api.ContainerAdjustment) { a.AddRlimit("RLIMIT_BOGUS", 1, 1) }, adjuster{}, errdefs.ErrInvalidArgument, "not a Linux rlimit"},
		{"soft rlimit above hard", func(a *api.ContainerAdjustment) { a.AddRlimit("RLIMIT_NOFILE", 1, 2) }, adjuster{}, errdefs.ErrInvalidArgument, "above the hard limit"},
		{"relative hook", func(a *api.ContainerAdjustment) {
			a.AddHooks(&api.Hooks{Prestart: []*api.Hook{{Path: "hook"}}})
		}, adjuster{}, errdefs.ErrInvalidArgument, "not absolute"},
		{"oom score out of range", func(a *api.ContainerAdjustment) { v := 5000; a.SetLinuxOomScoreAdj(&v) }, adjuster{}, errdefs.ErrInvalidArgument, "outside -1000..1000"},
		{"runtime annotation", func(a *api.ContainerAdjustment) {
			a.AddAnnotation("io.kubernetes.cri.sandbox-id", "other")
		}, adjuster{}, errdefs.ErrInvalidArgument, "runtime's own"},
		{"removal of a runtime annotation", func(a *api.ContainerAdjustment) {
			a.RemoveAnnotation("io.kubernetes.cri.sandbox-id")
		}, adjuster{}, errdefs.ErrInvalidArgument, "runtime's own"},
		{"CDI device without CDI", func(a *api.ContainerAdjustment) {
			a.AddCDIDevice(&api.CDIDevice{Name: "vendor.com/gpu=0"})
		}, adjuster{}, errdefs.ErrFailedPrecondition, "CDI is not enabled"},
		{"unknown CDI device", func(a *api.ContainerAdjustment) {
			a.AddCDIDevice(&api.CDIDevice{Name: "vendor.com/gpu=9"})
		}, adjuster{injectCDI: func(*rspec.Spec, []string) error { return errdefs.ErrNotFound }}, errdefs.ErrNotFound, "not found"},
		{"block I/O class", func(a *api.ContainerAdjustment) { a.SetLinuxBlockIOClass("slow") }, adjuster{}, errdefs.ErrFailedPrecondition, "no block I/O classes"},
		{"host refuses resources", func(a *api.ContainerAdjustment) { a.AddLinuxUnified("memory.high", "1") },
			adjuster{fixResources: func(*rspec.LinuxResources) error { return errors.New("needs cgroup v2") }}, errdefs.ErrInvalidArgument, "needs cgroup v2"},
		{"spec check refuses", func(a *api.ContainerAdjustment) { a.SetLinuxCgroupsPath("relative") },
			adjuster{checkSpec: func(*rspec.Spec) error { return errors.New("cgroups path") }}, errdefs.ErrInvalidArgument, "cgroups path"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			a := &api.ContainerAdjustment{}
			tc.adjust(a)
			err := tc.adj.apply(baseSpec(), a)
			if !errors.Is(err, tc.class) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("apply = %v; want %v mentioning %q", err, tc.class, tc.msg)
			}
		})
	}
}

// The CDI devices a plugin asks for go through the runtime's injector.
func TestAdjusterInjectsCDIDevices(t *testing.T) {
	var got []string
	adj := adjuster{injectCDI: func(s *rspec.Spec, names []string) error {
		got = names
		s.Process.Env = append(s.Process.Env, "CDI=1")
		return nil
	}}
	a := &api.ContainerAdjustment{}
	a.AddCDIDevice(&api.CDIDevice{Name: "accel-cri.io/gpu=0"})
	s := baseSpec()
	if err := adj.apply(s, a); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"accel-cri.io/gpu=0"}) || !slices.Contains(s.Process.Env, "CDI=1") {
		t.Errorf("injector got %v, env %v; want the device injected", got, s.Process.Env)
	}
}

func TestLastRlimitPerType(t *testing.T) {
	in := []rspec.POSIXRlimit{{Type: "A", Hard: 1}, {Type: "B", Hard: 2}, {Type: "A", Hard: 3}}
	want := []rspec.POSIXRlimit{{Type: "B", Hard: 2}, {Type: "A", Hard: 3}}
	if diff := cmp.Diff(want, lastRlimitPerType(in)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
