package preflight

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os/exec"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/accel-cri/accel-cri/config"
	"github.com/accel-cri/accel-cri/devices"
	"github.com/accel-cri/accel-cri/sandbox"
)

// fakeHost is a node made of a MapFS (paths without the leading slash), a
// PATH, canned command output and probe answers.
type fakeHost struct {
	fsys       fstest.MapFS
	path       map[string]string // name -> absolute path
	cmds       map[string]string // "bin arg..." -> stdout
	overlayErr error
	oom        *sandbox.OOMScoreRange
	uid        int
	answering  map[string]bool // unix sockets a process serves
}

func rel(name string) string { return strings.TrimPrefix(name, "/") }

func (h *fakeHost) ReadFile(name string) ([]byte, error)       { return h.fsys.ReadFile(rel(name)) }
func (h *fakeHost) ReadDir(name string) ([]fs.DirEntry, error) { return h.fsys.ReadDir(rel(name)) }
func (h *fakeHost) Stat(name string) (fs.FileInfo, error)      { return h.fsys.Stat(rel(name)) }
func (h *fakeHost) Geteuid() int                               { return h.uid }
func (h *fakeHost) MountOverlay(string) error                  { return h.overlayErr }
func (h *fakeHost) SocketAnswers(path string) bool             { return h.answering[path] }
func (h *fakeHost) OOMScoreRange() (*sandbox.OOMScoreRange, error) {
	if h.oom == nil {
		return nil, errors.New("no /proc")
	}
	return h.oom, nil
}

func (h *fakeHost) LookPath(file string) (string, error) {
	if p, ok := h.path[file]; ok {
		return p, nil
	}
	return "", &exec.Error{Name: file, Err: exec.ErrNotFound}
}

func (h *fakeHost) Run(_ context.Context, name string, args ...string) ([]byte, error) {
	out, ok := h.cmds[strings.Join(append([]string{name}, args...), " ")]
	if !ok {
		return nil, errors.New("exit status 1")
	}
	return []byte(out), nil
}

const (
	v2Mountinfo = "25 1 0:23 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n"
	v1Mountinfo = "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n" +
		"32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n" +
		"35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n" +
		"36 31 0:33 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n"
	hybridMountinfo = v1Mountinfo + "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
	bridgeConflist  = `{"cniVersion":"1.0.0","name":"k8s-pods","plugins":[{"type":"bridge","ipam":{"type":"host-local"}},{"type":"portmap","capabilities":{"portMappings":true}}]}`
	runcIDMap       = `{"ociVersionMin":"1.0.0","mountOptions":["rro"],"linux":{"mountExtensions":{"idmap":{"enabled":true}}}}`
	runcNoIDMap     = `{"ociVersionMin":"1.0.0","mountOptions":["bind"]}`
)

func exe() *fstest.MapFile { return &fstest.MapFile{Mode: 0o755} }

// goodHost is a node on which every check passes with the default config.
func goodHost() *fakeHost {
	return &fakeHost{
		fsys: fstest.MapFS{
			"proc/self/mountinfo":                   {Data: []byte(v2Mountinfo)},
			"sys/fs/cgroup/cgroup.controllers":      {Data: []byte("cpuset cpu io memory hugetlb pids\n")},
			"proc/1/comm":                           {Data: []byte("systemd\n")},
			"proc/sys/net/ipv4/ip_forward":          {Data: []byte("1\n")},
			"proc/self/status":                      {Data: []byte("Name:\taccel-cri\nSeccomp:\t0\nSeccomp_filters:\t0\n")},
			"proc/sys/kernel/seccomp/actions_avail": {Data: []byte("kill_process kill_thread trap errno user_notif trace log allow\n")},
			"proc/sys/kernel/osrelease":             {Data: []byte("6.12.0-1-amd64\n")},
			"proc/sys/user/max_user_namespaces":     {Data: []byte("63000\n")},
			"etc/cni/net.d/10-bridge.conflist":      {Data: []byte(bridgeConflist)},
			"etc/cni/net.d/README":                  {Data: []byte("not a config")},
			"usr/lib/cni/bridge":                    exe(),
			"usr/lib/cni/host-local":                exe(),
			"usr/lib/cni/portmap":                   exe(),
			"opt/cni/bin/loopback":                  exe(),
			"dev/kvm":                               {Mode: fs.ModeDevice | fs.ModeCharDevice | 0o660},
			"var/lib":                               {Mode: fs.ModeDir | 0o755},
			"proc/cpuinfo":                          {Data: []byte("processor\t: 0\nflags\t\t: fpu vme de pse vmx ssse3\n")},
		},
		path: map[string]string{
			"containerd":              "/usr/local/bin/containerd",
			"containerd-shim-runc-v2": "/usr/local/bin/containerd-shim-runc-v2",
			"/usr/local/sbin/runc":    "/usr/local/sbin/runc",
			"crun":                    "/usr/bin/crun",
			"/usr/local/sbin/criu":    "/usr/local/sbin/criu",
		},
		cmds: map[string]string{
			"/usr/local/bin/containerd --version": "containerd github.com/containerd/containerd/v2 2.2.9 abc\n",
			"/usr/local/sbin/runc --version":      "runc version 1.5.3\ncommit: v1.5.3\nspec: 1.3.0\ngo: go1.26.8\nlibseccomp: 2.5.4\n",
			"/usr/local/sbin/runc features":       runcIDMap,
			"/usr/bin/crun --version":             "crun version 1.8.1\ncommit: f8a0\n",
			"/usr/bin/crun features":              runcNoIDMap,
			"/usr/local/sbin/criu --version":      "Version: 4.1.1\n",
			"/usr/local/sbin/criu check":          "Looks good.\n",
		},
		oom: &sandbox.OOMScoreRange{Min: -1000},
	}
}

func run(h *fakeHost, cfg config.Config, opts ...Option) []Result {
	return Run(context.Background(), cfg, append([]Option{WithHost(h), WithExpectedContainerd("v2.2.9")}, opts...)...)
}

func find(results []Result, item string) (Result, bool) {
	for _, r := range results {
		if r.Item == item {
			return r, true
		}
	}
	return Result{}, false
}

func TestGoodHostAllOK(t *testing.T) {
	results := run(goodHost(), config.Default())
	if len(results) < 11 {
		t.Fatalf("only %d results: %+v", len(results), results)
	}
	for _, r := range results {
		if r.Status != OK {
			t.Errorf("%s: %s %s (fix: %s)", r.Item, r.Status, r.Detail, r.Fix)
		}
	}
	var buf bytes.Buffer
	if Print(&buf, results) {
		t.Fatalf("Print reported a failure:\n%s", buf.String())
	}
	if strings.Contains(buf.String(), "fix:") || !strings.Contains(buf.String(), "0 warnings, 0 failed: this node can run accel-cri") {
		t.Errorf("report:\n%s", buf.String())
	}
}

func TestChecks(t *testing.T) {
	tests := []struct {
		desc   string
		host   func(*fakeHost)
		cfg    func(*config.Config)
		item   string
		status Status
		detail string // substring of the detail
	}{
		{desc: "not root", host: func(h *fakeHost) { h.uid = 1000 }, item: "root", status: Fail, detail: "uid 1000"},
		{desc: "containerd missing", host: func(h *fakeHost) { delete(h.path, "containerd") }, item: "containerd", status: Fail, detail: "not found"},
		{desc: "containerd other minor", host: func(h *fakeHost) {
			h.cmds["/usr/local/bin/containerd --version"] = "containerd containerd.io 1.7.27 05044ec\n"
		}, item: "containerd", status: Fail, detail: "v1.7.27, accel-cri needs v2.2.9"},
		{desc: "containerd other patch", host: func(h *fakeHost) {
			h.cmds["/usr/local/bin/containerd --version"] = "containerd github.com/containerd/containerd/v2 v2.2.4\n"
		}, item: "containerd", status: Warn, detail: "v2.2.4"},
		{desc: "containerd version unreadable", host: func(h *fakeHost) { h.cmds["/usr/local/bin/containerd --version"] = "hello\n" }, item: "containerd", status: Fail, detail: "no version"},
		{desc: "external containerd socket", host: func(h *fakeHost) {
			h.fsys["run/containerd/containerd.sock"] = &fstest.MapFile{Mode: fs.ModeSocket}
		}, cfg: func(c *config.Config) { c.ContainerdAddr = "/run/containerd/containerd.sock" }, item: "containerd", status: OK, detail: "uses the containerd at"},
		{desc: "external containerd absent", cfg: func(c *config.Config) { c.ContainerdAddr = "/run/containerd/containerd.sock" }, item: "containerd", status: Fail, detail: "not a socket"},
		{desc: "default runtime binary missing", host: func(h *fakeHost) { delete(h.path, "/usr/local/sbin/runc") }, item: "runtime runc", status: Fail, detail: "default handler"},
		{desc: "shim missing", host: func(h *fakeHost) { delete(h.path, "containerd-shim-runc-v2") }, item: "runtime runc", status: Fail, detail: "containerd-shim-runc-v2 not found"},
		{desc: "optional runtime missing", cfg: func(c *config.Config) {
			c.Runtimes["runsc"] = config.RuntimeConfig{BinaryName: "runsc"}
		}, item: "runtime runsc", status: Warn, detail: "optional handler"},
		{desc: "optional runtime present", cfg: func(c *config.Config) {
			c.Runtimes["crun"] = config.RuntimeConfig{BinaryName: "crun"}
		}, item: "runtime crun", status: OK, detail: "crun version 1.8.1"},
		{desc: "no CNI config", host: func(h *fakeHost) { delete(h.fsys, "etc/cni/net.d/10-bridge.conflist") }, item: "cni", status: Warn, detail: "no network config"},
		{desc: "CNI dir absent", cfg: func(c *config.Config) { c.CNIConfDir = "/etc/cni/other" }, item: "cni", status: Warn, detail: "no network config"},
		{desc: "invalid conflist", host: func(h *fakeHost) {
			h.fsys["etc/cni/net.d/10-bridge.conflist"] = &fstest.MapFile{Data: []byte(`{"name":`)}
		}, item: "cni", status: Fail, detail: "not a valid CNI config"},
		{desc: "first config wins", host: func(h *fakeHost) {
			h.fsys["etc/cni/net.d/05-broken.conf"] = &fstest.MapFile{Data: []byte(`nope`)}
		}, item: "cni", status: Fail, detail: "05-broken.conf"},
		{desc: "single .conf accepted", host: func(h *fakeHost) {
			delete(h.fsys, "etc/cni/net.d/10-bridge.conflist")
			h.fsys["etc/cni/net.d/10-bridge.conf"] = &fstest.MapFile{Data: []byte(`{"cniVersion":"0.4.0","name":"one","type":"bridge"}`)}
		}, item: "cni", status: OK, detail: `network "one"`},
		{desc: "plugin missing", host: func(h *fakeHost) { delete(h.fsys, "usr/lib/cni/portmap") }, item: "cni", status: Fail, detail: "needs plugins portmap"},
		{desc: "loopback missing", host: func(h *fakeHost) { delete(h.fsys, "opt/cni/bin/loopback") }, item: "cni", status: Fail, detail: "loopback"},
		{desc: "plugin not executable", host: func(h *fakeHost) { h.fsys["usr/lib/cni/bridge"] = &fstest.MapFile{Mode: 0o644} }, item: "cni", status: Fail, detail: "bridge"},
		{desc: "ip_forward off", host: func(h *fakeHost) { h.fsys["proc/sys/net/ipv4/ip_forward"] = &fstest.MapFile{Data: []byte("0\n")} }, item: "ip_forward", status: Warn, detail: "ip_forward=0"},
		{desc: "cgroup v2 systemd", item: "cgroups", status: OK, detail: "v2 (unified), driver systemd"},
		{desc: "cgroup v1", host: func(h *fakeHost) {
			h.fsys["proc/self/mountinfo"] = &fstest.MapFile{Data: []byte(v1Mountinfo)}
		}, item: "cgroups", status: Warn, detail: "v1 (legacy)"},
		{desc: "cgroup hybrid with crun", host: func(h *fakeHost) {
			h.fsys["proc/self/mountinfo"] = &fstest.MapFile{Data: []byte(hybridMountinfo)}
			h.fsys["sys/fs/cgroup/unified/cgroup.controllers"] = &fstest.MapFile{Data: []byte("hugetlb\n")}
		}, cfg: func(c *config.Config) { c.Runtimes["crun"] = config.RuntimeConfig{BinaryName: "crun"} }, item: "cgroups", status: Warn, detail: "crun (handlers crun) refuses every container"},
		{desc: "cgroup hybrid without controllers", host: func(h *fakeHost) {
			h.fsys["proc/self/mountinfo"] = &fstest.MapFile{Data: []byte(hybridMountinfo)}
		}, item: "cgroups", status: Warn, detail: "hybrid"},
		{desc: "systemd driver without systemd", host: func(h *fakeHost) {
			h.fsys["proc/1/comm"] = &fstest.MapFile{Data: []byte("tini\n")}
		}, cfg: func(c *config.Config) { c.CgroupDriver = "systemd" }, item: "cgroups", status: Fail, detail: "systemd is not PID 1"},
		{desc: "auto driver without systemd is cgroupfs", host: func(h *fakeHost) {
			h.fsys["proc/1/comm"] = &fstest.MapFile{Data: []byte("tini\n")}
		}, item: "cgroups", status: OK, detail: "driver cgroupfs"},
		{desc: "memory controller missing", host: func(h *fakeHost) {
			h.fsys["sys/fs/cgroup/cgroup.controllers"] = &fstest.MapFile{Data: []byte("cpu pids\n")}
		}, item: "cgroups", status: Fail, detail: "memory"},
		{desc: "no cgroups", host: func(h *fakeHost) { h.fsys["proc/self/mountinfo"] = &fstest.MapFile{Data: []byte("")} }, item: "cgroups", status: Fail, detail: "no cgroup"},
		{desc: "overlay fails", host: func(h *fakeHost) { h.overlayErr = errors.New("invalid argument") }, item: "overlayfs", status: Fail, detail: "invalid argument"},
		{desc: "overlay tested on nearest parent", item: "overlayfs", status: OK, detail: "filesystem of /var/lib"},
		{desc: "other snapshotter", host: func(h *fakeHost) { h.overlayErr = errors.New("unused") }, cfg: func(c *config.Config) { c.Snapshotter = "native" }, item: "overlayfs", status: OK, detail: "not used"},
		{desc: "no seccomp", host: func(h *fakeHost) {
			h.fsys["proc/self/status"] = &fstest.MapFile{Data: []byte("Name:\tx\n")}
		}, item: "seccomp", status: Warn, detail: "no seccomp"},
		{desc: "runc without libseccomp", host: func(h *fakeHost) { h.cmds["/usr/local/sbin/runc --version"] = "runc version 1.5.3\n" }, item: "seccomp", status: Warn, detail: "no libseccomp"},
		{desc: "userns ok", item: "user namespaces", status: OK, detail: "runc (runc version 1.5.3)"},
		{desc: "runc with known escapes", host: func(h *fakeHost) {
			h.cmds["/usr/local/sbin/runc --version"] = "runc version 1.2.5\ncommit: v1.2.5\nlibseccomp: 2.5.5\n"
		}, item: "runtime runc", status: Warn, detail: "CVE-2025-31133"},
		{desc: "runc without idmap", host: func(h *fakeHost) {
			h.cmds["/usr/local/sbin/runc --version"] = "runc version 1.1.5+ds1\nlibseccomp: 2.5.4\n"
			h.cmds["/usr/local/sbin/runc features"] = runcNoIDMap
		}, item: "user namespaces", status: Warn, detail: "runc (runc version 1.1.5+ds1) have no idmapped mounts"},
		{desc: "state below a directory others cannot search", host: func(h *fakeHost) {
			h.fsys["home/ops"] = &fstest.MapFile{Mode: fs.ModeDir | 0o700}
		}, cfg: func(c *config.Config) { c.State = "/home/ops/accel-cri/state" }, item: "user namespaces", status: Warn, detail: "/home/ops (mode 0700) is not searchable by others"},
		{desc: "state itself not searchable", host: func(h *fakeHost) {
			h.fsys["srv/state"] = &fstest.MapFile{Mode: fs.ModeDir | 0o750}
		}, cfg: func(c *config.Config) { c.State = "/srv/state" }, item: "user namespaces", status: Warn, detail: "/srv/state (mode 0750)"},
		{desc: "state below searchable directories", host: func(h *fakeHost) {
			h.fsys["srv/state"] = &fstest.MapFile{Mode: fs.ModeDir | 0o711}
		}, cfg: func(c *config.Config) { c.State = "/srv/state/not-yet-made" }, item: "user namespaces", status: OK, detail: "do idmapped mounts"},
		{desc: "external containerd keeps its bundles elsewhere", host: func(h *fakeHost) {
			h.fsys["home/ops"] = &fstest.MapFile{Mode: fs.ModeDir | 0o700}
			h.fsys["run/containerd/containerd.sock"] = &fstest.MapFile{Mode: fs.ModeSocket}
		}, cfg: func(c *config.Config) {
			c.State = "/home/ops/state"
			c.ContainerdAddr = "/run/containerd/containerd.sock"
		}, item: "user namespaces", status: OK, detail: "do idmapped mounts"},
		{desc: "old kernel", host: func(h *fakeHost) {
			h.fsys["proc/sys/kernel/osrelease"] = &fstest.MapFile{Data: []byte("5.10.0-28-amd64\n")}
		}, item: "user namespaces", status: Warn, detail: "older than 6.3"},
		{desc: "userns disabled", host: func(h *fakeHost) {
			h.fsys["proc/sys/user/max_user_namespaces"] = &fstest.MapFile{Data: []byte("0\n")}
		}, item: "user namespaces", status: Warn, detail: "disabled"},
		{desc: "oom restricted", host: func(h *fakeHost) { h.oom = &sandbox.OOMScoreRange{Min: 0, Restricted: true} }, item: "oom_score_adj", status: Warn, detail: "clamps container values to 0"},
		{desc: "oom probe error", host: func(h *fakeHost) { h.oom = nil }, item: "oom_score_adj", status: Warn, detail: "probe failed"},
		{desc: "kvm absent, no VM handler", host: func(h *fakeHost) { delete(h.fsys, "dev/kvm") }, item: "kvm", status: OK, detail: "none configured"},
		{desc: "paravirtual kvm, no VM handler", host: func(h *fakeHost) {
			h.fsys["proc/cpuinfo"] = &fstest.MapFile{Data: []byte("flags\t\t: fpu vme ssse3\n")}
		}, item: "kvm", status: OK, detail: "no vmx/svm"},
		{desc: "kata with kvm", cfg: func(c *config.Config) { c.Runtimes["kata"] = config.RuntimeConfig{Type: config.RuntimeTypeKata} }, item: "kvm", status: OK, detail: "for VM handlers kata"},
		{desc: "kata with paravirtual kvm", host: func(h *fakeHost) {
			h.fsys["proc/cpuinfo"] = &fstest.MapFile{Data: []byte("flags\t\t: fpu vme ssse3\n")}
		}, cfg: func(c *config.Config) { c.Runtimes["kata"] = config.RuntimeConfig{Type: config.RuntimeTypeKata} }, item: "kvm", status: Warn, detail: "may not boot"},
		{desc: "kvm absent, optional kata", host: func(h *fakeHost) {
			delete(h.fsys, "dev/kvm")
			h.path["containerd-shim-kata-v2"] = "/usr/local/bin/containerd-shim-kata-v2"
		}, cfg: func(c *config.Config) {
			c.Runtimes["kata"] = config.RuntimeConfig{Type: config.RuntimeTypeKata}
		}, item: "kvm", status: Warn, detail: "VM handlers kata"},
		{desc: "kvm absent, default kata", host: func(h *fakeHost) { delete(h.fsys, "dev/kvm") }, cfg: func(c *config.Config) {
			c.Runtimes["kata"] = config.RuntimeConfig{Type: config.RuntimeTypeKata}
			c.DefaultRuntime = "kata"
		}, item: "kvm", status: Fail, detail: "kata is the default handler"},
		{desc: "kvm is not a device", host: func(h *fakeHost) { h.fsys["dev/kvm"] = &fstest.MapFile{} }, cfg: func(c *config.Config) {
			c.Runtimes["kata"] = config.RuntimeConfig{Type: config.RuntimeTypeKata}
		}, item: "kvm", status: Warn, detail: "no /dev/kvm"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			h := goodHost()
			if tc.host != nil {
				tc.host(h)
			}
			cfg := config.Default()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			results := run(h, cfg)
			r, ok := find(results, tc.item)
			if !ok {
				t.Fatalf("no %q result in %+v", tc.item, results)
			}
			if r.Status != tc.status || !strings.Contains(r.Detail, tc.detail) {
				t.Fatalf("%s = [%s] %s, want [%s] containing %q", tc.item, r.Status, r.Detail, tc.status, tc.detail)
			}
			if r.Status != OK && r.Fix == "" {
				t.Errorf("%s is %s without a fix", tc.item, r.Status)
			}
		})
	}
}

func TestDevices(t *testing.T) {
	gpu := devices.Device{Class: devices.ClassIntelGPU, Name: "0", Health: devices.Healthy}
	gone := devices.Device{Class: devices.ClassFPGA, Name: "1", Health: devices.Unhealthy}
	tests := []struct {
		desc   string
		inv    devices.Inventory
		err    error
		cdiOff bool
		status Status
		detail string
	}{
		{desc: "none", status: OK, detail: "0 found: none"},
		{desc: "found", inv: devices.Inventory{Devices: []devices.Device{gpu, gone}}, status: OK, detail: "accel-cri.io/intel-gpu=0, accel-cri.io/fpga=1 (Unhealthy)"},
		{desc: "partial error", inv: devices.Inventory{Devices: []devices.Device{gpu}}, err: errors.New("read port 2"), status: Warn, detail: "read port 2"},
		{desc: "discovery off", cdiOff: true, status: OK, detail: "discovery off"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			cfg := config.Default()
			if tc.cdiOff {
				cfg.Devices.CDIOutputDir = ""
			}
			results := run(goodHost(), cfg, WithDiscover(func() (devices.Inventory, error) { return tc.inv, tc.err }))
			r, ok := find(results, "devices")
			if !ok || r.Status != tc.status || !strings.Contains(r.Detail, tc.detail) {
				t.Fatalf("devices = %+v, want [%s] containing %q", r, tc.status, tc.detail)
			}
		})
	}
	if _, ok := find(run(goodHost(), config.Default()), "devices"); ok {
		t.Error("devices checked without a discovery function")
	}
}

func TestPrint(t *testing.T) {
	var buf bytes.Buffer
	failed := Print(&buf, []Result{
		{Status: OK, Item: "a", Detail: "fine"},
		{Status: Warn, Item: "b", Detail: "meh", Fix: "do b"},
		{Status: Fail, Item: "c", Detail: "broken", Fix: "do c"},
	})
	want := "[OK] a: fine\n[WARN] b: meh\n  fix: do b\n[FAIL] c: broken\n  fix: do c\n" +
		"1 ok, 1 warnings, 1 failed: this node cannot run accel-cri until the FAIL items are fixed\n"
	if !failed || buf.String() != want {
		t.Fatalf("failed=%v, output:\n%s\nwant:\n%s", failed, buf.String(), want)
	}
}

func TestKernelAtLeast(t *testing.T) {
	tests := []struct {
		rel  string
		want bool
	}{
		{"6.3.0", true}, {"6.18.44-fc-v595", true}, {"6.2.16", false}, {"5.19.0", false}, {"7.0", true}, {"6.3-rc1", true}, {"weird", false},
	}
	for _, tc := range tests {
		if got := kernelAtLeast(tc.rel, 6, 3); got != tc.want {
			t.Errorf("kernelAtLeast(%q) = %v, want %v", tc.rel, got, tc.want)
		}
	}
}

func TestRuncProblem(t *testing.T) {
	for _, tc := range []struct {
		out  string
		want string // a part of the problem; "" for none
	}{
		{"runc version 1.5.3\ncommit: v1.5.3\n", ""},
		{"runc version 1.4.0\n", ""},
		{"runc version 1.4.0-rc.3\n", ""},
		{"runc version 1.4.0-rc.2\n", "1.4.0-rc.2 has CVE-2025-31133"},
		{"runc version 1.3.3\n", ""},
		{"runc version 1.3.2\n", "1.3.2 has CVE-2025-31133"},
		{"runc version 1.2.8\n", ""},
		{"runc version 1.2.7\n", "CVE-2025-52881"},
		{"runc version 1.1.15\n", "no idmapped mounts"},
		{"runc version 1.1.5+ds1\nlibseccomp: 2.5.4\n", "CVE-2024-21626"},
		{"runc version 1.0.3\n", "CVE-2024-21626"},
		{"runc version 2.0.0\n", ""},
		{"crun version 1.8.1\n", ""},
		{"", ""},
	} {
		got := runcProblem([]byte(tc.out))
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("runcProblem(%q) = %q, want %q", tc.out, got, tc.want)
		}
	}
	if p := runcProblem([]byte("runc version 1.1.15\n")); strings.Contains(p, "CVE-2024-21626") {
		t.Errorf("1.1.15 has the 1.1.12 fix: %q", p)
	}
}

func TestShimBinary(t *testing.T) {
	for typ, want := range map[string]string{
		config.RuntimeTypeRunc:       "containerd-shim-runc-v2",
		config.RuntimeTypeRunsc:      "containerd-shim-runsc-v1",
		config.RuntimeTypeKata:       "containerd-shim-kata-v2",
		"io.containerd.kata-qemu.v2": "containerd-shim-kata-qemu-v2",
	} {
		if got := shimBinary(typ); got != want {
			t.Errorf("shimBinary(%q) = %q, want %q", typ, got, want)
		}
	}
}
