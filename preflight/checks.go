package preflight

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"

	"github.com/accel-cri/accel-cri/config"
	"github.com/accel-cri/accel-cri/devices"
	"github.com/accel-cri/accel-cri/internal/cgroups"
	"github.com/accel-cri/accel-cri/sandbox"
)

// cmdTimeout bounds every command a check runs (`runc --version`, ...).
const cmdTimeout = 10 * time.Second

func (c *checker) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	return c.host.Run(ctx, name, args...)
}

func checkRoot(_ context.Context, c *checker) []Result {
	if uid := c.host.Geteuid(); uid != 0 {
		return []Result{fail("root", "run accel-cri (and this check) as root; the systemd unit in deploy/ does",
			"running as uid %d; accel-cri mounts, makes namespaces and cgroups and needs root", uid)}
	}
	return []Result{ok("root", "running as root")}
}

// containerdVersion matches `containerd --version`:
// "containerd github.com/containerd/containerd/v2 2.4.2+unknown <commit>".
var containerdVersion = regexp.MustCompile(`\bv?(\d+)\.(\d+)\.(\d+)\S*`)

func checkContainerd(ctx context.Context, c *checker) []Result {
	const item = "containerd"
	if addr := c.cfg.ContainerdAddr; addr != "" {
		fi, err := c.host.Stat(addr)
		if err != nil || fi.Mode().Type() != fs.ModeSocket {
			return []Result{fail(item, "start that containerd, or leave containerd_address empty so accel-cri runs its own",
				"containerd_address %s is not a socket (%v)", addr, errOr(err, "not a socket"))}
		}
		return []Result{ok(item, "uses the containerd at %s (accel-cri expects %s; its CRI plugin may stay on: accel-cri uses namespace %q)", addr, c.expected, c.cfg.Namespace)}
	}
	install := fmt.Sprintf("install containerd %s (the release tarball's bin/ into /usr/local/bin) or set containerd_binary to its path", c.expected)
	bin, err := c.host.LookPath(c.cfg.ContainerdBinary)
	if err != nil {
		return []Result{fail(item, install, "containerd_binary %q not found: %v", c.cfg.ContainerdBinary, err)}
	}
	out, err := c.run(ctx, bin, "--version")
	if err != nil {
		return []Result{fail(item, install, "%s --version: %v", bin, err)}
	}
	m := containerdVersion.FindStringSubmatch(string(out))
	if m == nil {
		return []Result{fail(item, install, "%s --version printed no version: %q", bin, firstLine(out))}
	}
	got := fmt.Sprintf("v%s.%s.%s", m[1], m[2], m[3])
	switch {
	case got == c.expected:
		return []Result{ok(item, "%s %s (expected %s)", bin, got, c.expected)}
	case sameMinor(got, c.expected):
		return []Result{warn(item, install, "%s is %s, accel-cri is built and tested against %s (same minor release)", bin, got, c.expected)}
	}
	return []Result{fail(item, install, "%s is %s, accel-cri needs %s", bin, got, c.expected)}
}

func sameMinor(a, b string) bool {
	cut := func(v string) string {
		parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
		if len(parts) < 2 {
			return v
		}
		return parts[0] + "." + parts[1]
	}
	return cut(a) == cut(b)
}

// shimBinary is the binary containerd runs for a runtime type:
// io.containerd.runc.v2 -> containerd-shim-runc-v2.
func shimBinary(typ string) string {
	return "containerd-shim-" + strings.ReplaceAll(strings.TrimPrefix(typ, "io.containerd."), ".", "-")
}

func runtimeType(rc config.RuntimeConfig) string {
	if rc.Type == "" {
		return config.RuntimeTypeRunc
	}
	return rc.Type
}

// ociBinary is the OCI runtime a runc.v2 handler runs.
func ociBinary(rc config.RuntimeConfig) string { return rc.OCIBinary() }

// runcVersionLine matches the first line of `runc --version`:
// "runc version 1.5.3" (also "1.4.0-rc.2", "1.1.5+ds1").
var runcVersionLine = regexp.MustCompile(`^runc version (\d+)\.(\d+)\.(\d+)(-rc\.?(\d+))?`)

// runcProblem reads `runc --version` and says what is wrong with that runc,
// or "" when nothing is (or the binary is not runc: crun and runsc print
// their own versions). The fixes it looks for:
//   - CVE-2025-31133, CVE-2025-52565, CVE-2025-52881 (container escapes
//     through masked paths, /dev/console and procfs writes): fixed in 1.2.8,
//     1.3.3 and 1.4.0-rc.3;
//   - CVE-2024-21626 (leaked fd to the host's cgroupfs): fixed in 1.1.12;
//   - idmapped mounts, which user-namespaced pods need: 1.2.0.
func runcProblem(versionOut []byte) string {
	m := runcVersionLine.FindSubmatch(versionOut)
	if m == nil {
		return ""
	}
	num := func(b []byte) int { n, _ := strconv.Atoi(string(b)); return n }
	major, minor, patch := num(m[1]), num(m[2]), num(m[3])
	rc := -1 // not a release candidate
	if len(m[4]) > 0 {
		rc = num(m[5])
	}
	v := fmt.Sprintf("%d.%d.%d", major, minor, patch)
	if rc >= 0 {
		v += fmt.Sprintf("-rc.%d", rc)
	}
	escapes := "CVE-2025-31133, CVE-2025-52565 and CVE-2025-52881 (container escapes; fixed in 1.2.8, 1.3.3, 1.4.0)"
	switch {
	case major != 1:
		return ""
	case minor < 2:
		p := "runc " + v + " has " + escapes
		if minor < 1 || patch < 12 {
			p += " and CVE-2024-21626 (fixed in 1.1.12)"
		}
		return p + ", and no idmapped mounts (user-namespaced pods fail)"
	case minor == 2 && patch < 8, minor == 3 && patch < 3, minor == 4 && patch == 0 && rc >= 0 && rc < 3:
		return "runc " + v + " has " + escapes
	}
	return ""
}

// checkRuntimes checks each runtime handler's shim and, for runc.v2
// handlers, its OCI runtime. Only the default handler is required.
func checkRuntimes(ctx context.Context, c *checker) []Result {
	var out []Result
	for _, name := range c.cfg.RuntimeNames() {
		rc := c.cfg.Runtimes[name]
		item := "runtime " + name
		required := name == c.cfg.DefaultRuntime
		bad := warn
		role := "optional handler: pods of its RuntimeClass fail"
		if required {
			bad, role = fail, "default handler: no pod can start"
		}
		typ := runtimeType(rc)
		shim := shimBinary(typ)
		shimPath, err := c.host.LookPath(shim)
		if err != nil {
			out = append(out, bad(item, fmt.Sprintf("install %s into PATH (next to containerd), or remove [runtimes.%s]", shim, name),
				"%s: shim %s not found in PATH", role, shim))
			continue
		}
		if typ != config.RuntimeTypeRunc {
			out = append(out, ok(item, "%s, shim %s", typ, shimPath))
			continue
		}
		bin := ociBinary(rc)
		binPath, err := c.host.LookPath(bin)
		if err != nil {
			out = append(out, bad(item, fmt.Sprintf("install %s (Debian: apt-get install %s), or remove [runtimes.%s]", bin, filepath.Base(bin), name),
				"%s: OCI runtime %q not found", role, bin))
			continue
		}
		ver, err := c.run(ctx, binPath, "--version")
		if err != nil {
			out = append(out, bad(item, fmt.Sprintf("reinstall %s", bin), "%s: %s --version failed: %v", role, binPath, err))
			continue
		}
		if p := runcProblem(ver); p != "" {
			out = append(out, warn(item, "install runc 1.5 (hack/install-deps.sh builds it into "+config.DefaultRuncBinary+", the default binary_name)",
				"%s: %s (judged by its version: a distribution's build may carry backported fixes)", binPath, p))
			continue
		}
		out = append(out, ok(item, "%s with %s (%s), shim %s", typ, binPath, firstLine(ver), shimPath))
	}
	return out
}

// cniConfExts are the file kinds go-cni loads, the first one (lexically) wins.
var cniConfExts = []string{".conf", ".conflist", ".json"}

func checkCNI(_ context.Context, c *checker) []Result {
	const item = "cni"
	dir := c.cfg.CNIConfDir
	example := "install the cluster's network plugin (its DaemonSet writes a conflist there), or write one (docs/install.md has a bridge example)"
	entries, err := c.host.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return []Result{fail(item, "make cni_conf_dir readable by root", "read %s: %v", dir, err)}
	}
	var files []string
	for _, e := range entries {
		if !e.IsDir() && slices.Contains(cniConfExts, filepath.Ext(e.Name())) {
			files = append(files, e.Name())
		}
	}
	slices.Sort(files)
	if len(files) == 0 {
		return []Result{warn(item, example, "no network config in %s: pods other than hostNetwork ones cannot start until one appears (Status reports NetworkReady=false)", dir)}
	}
	path := filepath.Join(dir, files[0])
	b, err := c.host.ReadFile(path)
	if err != nil {
		return []Result{fail(item, "make the file readable by root", "read %s: %v", path, err)}
	}
	var list *libcni.NetworkConfigList
	if filepath.Ext(path) == ".conflist" {
		list, err = libcni.ConfListFromBytes(b)
	} else {
		var conf *libcni.PluginConfig
		if conf, err = libcni.ConfFromBytes(b); err == nil {
			list, err = libcni.ConfListFromConf(conf)
		}
	}
	if err != nil {
		return []Result{fail(item, "fix or replace "+path+" (it is the first config, the one accel-cri uses)", "%s is not a valid CNI config: %v", path, err)}
	}
	if len(list.Plugins) == 0 {
		return []Result{fail(item, "fix or replace "+path, "%s has no plugins", path)}
	}
	// loopback is added to every pod besides the configured network.
	types := []string{"loopback"}
	for _, p := range list.Plugins {
		if !slices.Contains(types, p.Network.Type) {
			types = append(types, p.Network.Type)
		}
	}
	var missing []string
	for _, t := range types {
		if !c.inBinDirs(t) {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return []Result{fail(item, fmt.Sprintf("install the CNI plugins (Debian: apt-get install containernetworking-plugins) into one of cni_bin_dirs %v", c.cfg.CNIBinDirs),
			"network %q from %s needs plugins %s, not found in %v", list.Name, path, strings.Join(missing, ", "), c.cfg.CNIBinDirs)}
	}
	return []Result{ok(item, "network %q from %s, plugins %s found", list.Name, path, strings.Join(types, ", "))}
}

func (c *checker) inBinDirs(plugin string) bool {
	for _, d := range c.cfg.CNIBinDirs {
		if fi, err := c.host.Stat(filepath.Join(d, plugin)); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return true
		}
	}
	return false
}

func checkIPForward(_ context.Context, c *checker) []Result {
	const item = "ip_forward"
	b, err := c.host.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		return []Result{warn(item, "check that /proc/sys is mounted", "cannot read net.ipv4.ip_forward: %v", err)}
	}
	if strings.TrimSpace(string(b)) == "1" {
		return []Result{ok(item, "net.ipv4.ip_forward=1: pods can reach other hosts")}
	}
	return []Result{warn(item, "sysctl -w net.ipv4.ip_forward=1 and persist it in /etc/sysctl.d/99-kubernetes.conf (a bridge conflist with \"isGateway\": true also turns it on)",
		"net.ipv4.ip_forward=0: pods reach the node but not other hosts or services")}
}

// handlersWithBinary names the runc.v2 handlers whose OCI runtime is bin.
func (c *checker) handlersWithBinary(bin string) []string {
	var out []string
	for _, name := range c.cfg.RuntimeNames() {
		rc := c.cfg.Runtimes[name]
		if runtimeType(rc) == config.RuntimeTypeRunc && filepath.Base(ociBinary(rc)) == bin {
			out = append(out, name)
		}
	}
	return out
}

func checkCgroups(_ context.Context, c *checker) []Result {
	const item = "cgroups"
	h, err := cgroups.Discover(c.host)
	if err != nil {
		return []Result{fail(item, "mount /proc", "%v", err)}
	}
	systemdPID1 := cgroups.SystemdPID1(c.host)
	driver := cgroups.ResolveDriver(c.cfg.CgroupDriver, systemdPID1)
	drv := fmt.Sprintf("driver %s (cgroup_driver %q; kubelet's cgroupDriver must be %s)", driver, c.cfg.CgroupDriver, driver)
	if driver == cgroups.DriverSystemd && !systemdPID1 {
		return []Result{fail(item, "set cgroup_driver = \"cgroupfs\" (and kubelet's cgroupDriver: cgroupfs), or boot with systemd",
			"cgroup_driver \"systemd\" but systemd is not PID 1")}
	}
	var version string
	switch h.Version {
	case cgroups.V2:
		version = "v2 (unified)"
	case cgroups.V1:
		version = "v1 (legacy)"
	case cgroups.Hybrid:
		version = "hybrid (v1 controllers, cgroup2 at " + h.Unified + ")"
	default:
		return []Result{fail(item, "mount cgroup2 at /sys/fs/cgroup (systemd does this at boot)", "no cgroup filesystem mounted")}
	}
	controllers, err := h.Controllers()
	if err != nil {
		return []Result{fail(item, "mount cgroup2 at /sys/fs/cgroup", "cgroup2 mounted but cgroup.controllers unreadable: %v", err)}
	}
	var missing []string
	for _, need := range []string{"cpu", "memory", "pids"} {
		if !slices.Contains(controllers, need) {
			missing = append(missing, need)
		}
	}
	if len(missing) > 0 {
		return []Result{fail(item, "enable the controllers (kernel config, cgroup_enable=memory on the kernel command line)",
			"%s without the %s controller(s) kubelet and accel-cri need", version, strings.Join(missing, ", "))}
	}
	switch h.Version {
	case cgroups.V2:
		return []Result{ok(item, "%s, %s", version, drv)}
	case cgroups.Hybrid:
		detail := fmt.Sprintf("%s, %s: Kubernetes 1.35+ kubelets refuse cgroup v1 by default", version, drv)
		fix := "boot with cgroup v2 only (systemd.unified_cgroup_hierarchy=1), or set kubelet's failCgroupV1: false to run on it"
		if v2c := h.UnifiedControllers; len(v2c) > 0 {
			detail += fmt.Sprintf("; the cgroup2 hierarchy holds controllers (%s)", strings.Join(v2c, " "))
			if crun := c.handlersWithBinary("crun"); len(crun) > 0 {
				detail += fmt.Sprintf(": crun (handlers %s) refuses every container (\"cgroups in hybrid mode not supported\")", strings.Join(crun, ", "))
				fix += "; for crun use the wrapper in docs/runtime-handlers.md that hides " + h.Unified + " from it"
			}
		}
		return []Result{warn(item, fix, "%s", detail)}
	}
	return []Result{warn(item, "boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1), or set kubelet's failCgroupV1: false to run on v1; cgroup v2-only features (memory.high, unified) are unavailable",
		"%s, %s: Kubernetes 1.35+ kubelets refuse cgroup v1 by default", version, drv)}
}

func checkOverlay(_ context.Context, c *checker) []Result {
	const item = "overlayfs"
	if c.cfg.Snapshotter != "overlayfs" {
		return []Result{ok(item, "not used (snapshotter %q)", c.cfg.Snapshotter)}
	}
	// The snapshots live under root; test the filesystem that holds it (or
	// will: its nearest existing parent).
	parent := c.cfg.Root
	for {
		if fi, err := c.host.Stat(parent); err == nil && fi.IsDir() {
			break
		}
		up := filepath.Dir(parent)
		if up == parent {
			break
		}
		parent = up
	}
	if err := c.host.MountOverlay(parent); err != nil {
		return []Result{fail(item, "load the overlay module (modprobe overlay) and put root on ext4 or xfs (with d_type), not on overlayfs, NFS or tmpfs without user xattrs",
			"an overlay mount on the filesystem of %s failed: %v", parent, err)}
	}
	return []Result{ok(item, "an overlay mount on the filesystem of %s works", parent)}
}

func checkSeccomp(ctx context.Context, c *checker) []Result {
	const item = "seccomp"
	fix := "use a kernel with CONFIG_SECCOMP_FILTER and a runc built with libseccomp; until then containers with the RuntimeDefault or Localhost profile fail to start"
	status, err := c.host.ReadFile("/proc/self/status")
	if err != nil || !strings.Contains(string(status), "\nSeccomp:") {
		return []Result{warn(item, fix, "the kernel has no seccomp support (no Seccomp line in /proc/self/status)")}
	}
	actions, err := c.host.ReadFile("/proc/sys/kernel/seccomp/actions_avail")
	if err != nil || !strings.Contains(string(actions), "errno") {
		return []Result{warn(item, fix, "the kernel has seccomp but no filter mode (actions_avail: %q)", strings.TrimSpace(string(actions)))}
	}
	detail := "kernel seccomp filters (" + strings.TrimSpace(string(actions)) + ")"
	if rc, ok := c.cfg.Runtimes[c.cfg.DefaultRuntime]; ok && runtimeType(rc) == config.RuntimeTypeRunc {
		if bin, err := c.host.LookPath(ociBinary(rc)); err == nil {
			if ver, err := c.run(ctx, bin, "--version"); err == nil {
				if i := strings.Index(string(ver), "libseccomp: "); i >= 0 {
					detail += ", " + filepath.Base(bin) + " with " + firstLine([]byte(string(ver)[i:]))
				} else if filepath.Base(bin) == "runc" {
					return []Result{warn(item, fix, "%s; %s reports no libseccomp", detail, bin)}
				}
			}
		}
	}
	return []Result{ok(item, "%s", detail)}
}

// kernelAtLeast compares an osrelease ("6.1.0-18-amd64") with major.minor.
func kernelAtLeast(release string, major, minor int) bool {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	digits := parts[1]
	if i := strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		digits = digits[:i]
	}
	mi, err2 := strconv.Atoi(digits)
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// checkUserNamespaces: pods with their own user namespace (hostUsers:
// false) need user namespaces in the kernel, idmapped mounts on the
// filesystems kubelet's volumes use (tmpfs: Linux 6.3) and an OCI runtime
// that does idmapped mounts.
func checkUserNamespaces(ctx context.Context, c *checker) []Result {
	const item = "user namespaces"
	fix := "for pods with hostUsers: false: Linux 6.3+ with user namespaces, and runc 1.2+ (or crun 1.9+) as the handler's binary_name; other pods are not affected"
	rel, _ := c.host.ReadFile("/proc/sys/kernel/osrelease")
	release := strings.TrimSpace(string(rel))
	maxNS, err := c.host.ReadFile("/proc/sys/user/max_user_namespaces")
	if err != nil || strings.TrimSpace(string(maxNS)) == "0" {
		return []Result{warn(item, fix, "the kernel (%s) has user namespaces disabled (user.max_user_namespaces=%s)", release, strings.TrimSpace(string(maxNS)))}
	}
	if !kernelAtLeast(release, 6, 3) {
		return []Result{warn(item, fix, "kernel %s is older than 6.3: no idmapped mounts on tmpfs", release)}
	}
	if dir, mode := unsearchableParent(c.host, c.cfg.State); dir != "" && c.cfg.ContainerdAddr == "" {
		return []Result{warn(item, fmt.Sprintf("chmod o+x %s, or put state below directories others may search (accel-cri makes its own 0711)", dir),
			"%s (mode %04o) is not searchable by others: the init of a user-namespaced container, root only inside its namespace, cannot reach its root filesystem below %s (the managed containerd's bundles)", dir, mode, c.cfg.State)}
	}
	var yes, no []string
	for _, name := range c.cfg.RuntimeNames() {
		rc := c.cfg.Runtimes[name]
		if runtimeType(rc) != config.RuntimeTypeRunc {
			continue
		}
		bin, err := c.host.LookPath(ociBinary(rc))
		if err != nil {
			continue // reported by the runtime check
		}
		out, err := c.run(ctx, bin, "features")
		f, perr := sandbox.ParseFeatures(out)
		verOut, _ := c.run(ctx, bin, "--version")
		who := fmt.Sprintf("%s (%s)", name, firstLine(verOut))
		if err != nil || perr != nil || !f.UserNamespaces {
			no = append(no, who)
		} else {
			yes = append(yes, who)
		}
	}
	switch {
	case len(no) == 0 && len(yes) == 0:
		return []Result{ok(item, "kernel %s supports them; no runc-type handler to ask (other shims decide themselves)", release)}
	case len(no) == 0:
		return []Result{ok(item, "kernel %s and handlers %s do idmapped mounts", release, strings.Join(yes, ", "))}
	}
	return []Result{warn(item, fix, "kernel %s supports them, but handler(s) %s have no idmapped mounts (`features` lacks mountExtensions.idmap): pods with hostUsers: false get Unimplemented and Status reports user_namespaces: false",
		release, strings.Join(no, ", "))}
}

// unsearchableParent returns the first existing directory on the way down
// to path (path included) that others may not search, with its mode; "" when
// there is none.
func unsearchableParent(h Host, path string) (string, fs.FileMode) {
	var dirs []string // path and its parents, without /
	for p := filepath.Clean(path); p != filepath.Dir(p); p = filepath.Dir(p) {
		dirs = append(dirs, p)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		fi, err := h.Stat(dirs[i])
		if err != nil {
			return "", 0 // made later by accel-cri, 0711
		}
		if fi.IsDir() && fi.Mode().Perm()&0o001 == 0 {
			return dirs[i], fi.Mode().Perm()
		}
	}
	return "", 0
}

func checkOOMScoreAdj(_ context.Context, c *checker) []Result {
	const item = "oom_score_adj"
	r, err := c.host.OOMScoreRange()
	if err != nil {
		return []Result{warn(item, "check that /proc is mounted read-write", "probe failed: %v", err)}
	}
	if r.Restricted {
		return []Result{warn(item, "give accel-cri CAP_SYS_RESOURCE (a root service on a VM or bare metal has it; in a container run it privileged); otherwise nothing to do: accel-cri clamps, pods still run",
			"lowering oom_score_adj below %d is not permitted (root lacks CAP_SYS_RESOURCE): accel-cri clamps container values to %d (kubelet asks -997 for Guaranteed pods' containers), and runc would otherwise fail with \"can't get final child's PID from pipe: EOF\"", r.Min, r.Min)}
	}
	return []Result{ok(item, "lowering is permitted (down to %d)", r.Min)}
}

// vmHandler: runtime types that run pods in a VM and need /dev/kvm.
func vmHandler(typ string) bool {
	return strings.Contains(typ, ".kata") || strings.Contains(typ, "firecracker") || strings.Contains(typ, ".fc.") || strings.Contains(typ, "cloud-hypervisor")
}

// cpuVirtFlags finds vmx (Intel VT-x) or svm (AMD-V) in /proc/cpuinfo.
var cpuVirtFlags = regexp.MustCompile(`(?m)^flags\s*:.*\b(vmx|svm)\b`)

func checkKVM(_ context.Context, c *checker) []Result {
	const item = "kvm"
	fi, err := c.host.Stat("/dev/kvm")
	present := err == nil && fi.Mode().Type() == fs.ModeDevice|fs.ModeCharDevice
	// Without vmx/svm, /dev/kvm is paravirtual (PVM, for example), which
	// cannot boot the ordinary guest kernels VM runtimes ship.
	cpuinfo, _ := c.host.ReadFile("/proc/cpuinfo")
	hwVirt := cpuVirtFlags.Match(cpuinfo)
	var vms []string
	for _, name := range c.cfg.RuntimeNames() {
		if vmHandler(runtimeType(c.cfg.Runtimes[name])) {
			vms = append(vms, name)
		}
	}
	fix := "enable hardware virtualization (vmx/svm; nested virtualization on a VM) and load kvm_intel or kvm_amd, or remove the VM handlers"
	switch {
	case len(vms) == 0 && present && hwVirt:
		return []Result{ok(item, "/dev/kvm present with vmx/svm: VM handlers (Kata) can be added")}
	case len(vms) == 0 && present:
		return []Result{ok(item, "/dev/kvm present but the CPU shows no vmx/svm (paravirtual KVM): VM handlers would not boot their guests; none configured")}
	case len(vms) == 0:
		return []Result{ok(item, "no /dev/kvm; needed only by VM handlers, none configured")}
	case present && hwVirt:
		return []Result{ok(item, "/dev/kvm present with vmx/svm for VM handlers %s", strings.Join(vms, ", "))}
	}
	detail := fmt.Sprintf("no /dev/kvm: pods of VM handlers %s cannot start", strings.Join(vms, ", "))
	if present {
		detail = fmt.Sprintf("/dev/kvm present but the CPU shows no vmx/svm (paravirtual KVM): VM handlers %s may not boot their guests", strings.Join(vms, ", "))
	}
	if slices.Contains(vms, c.cfg.DefaultRuntime) {
		return []Result{fail(item, fix, "%s, and %s is the default handler", detail, c.cfg.DefaultRuntime)}
	}
	return []Result{warn(item, fix, "%s", detail)}
}

func checkDevices(_ context.Context, c *checker) []Result {
	const item = "devices"
	if c.discover == nil {
		return nil
	}
	if c.cfg.Devices.CDIOutputDir == "" {
		return []Result{ok(item, "discovery off (devices.cdi_output_dir is empty); CDI devices come from specs in %v only", c.cfg.Devices.CDISpecDirs)}
	}
	inv, err := c.discover()
	var names []string
	for _, d := range inv.Devices {
		n := d.CDIName()
		if d.Health != "" && d.Health != devices.Healthy {
			n += " (" + string(d.Health) + ")"
		}
		names = append(names, n)
	}
	found := "none (a CPU-only node: GPU/FPGA pods will not find their CDI devices)"
	if len(names) > 0 {
		found = strings.Join(names, ", ")
	}
	if err != nil {
		return []Result{warn(item, "see `accel-cri devices` for details; check the drivers and devices.sysfs_root/dev_root", "found %s; some devices could not be read: %v", found, err)}
	}
	return []Result{ok(item, "%d found: %s", len(names), found)}
}

func errOr(err error, s string) string {
	if err != nil {
		return err.Error()
	}
	return s
}
