package cri

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/devices"
	"github.com/accel-cri/accel-cri/sandbox/spec"
)

// This file validates CreateContainer's config and the resources of
// UpdateContainerResources.

const (
	// maxExecBytes bounds command, args and env together: Linux's default
	// ARG_MAX is 2 MiB, execve fails beyond it anyway.
	maxExecBytes = 2 << 20
	// maxUsernameLen bounds run_as_username.
	maxUsernameLen = 256
	// maxCPUs bounds the CPU and memory node numbers of a cpuset.
	maxCPUs = 1 << 16
	// maxUnified bounds the cgroup v2 files of resources.unified.
	maxUnified = 64
)

// validateContainerConfig checks a CreateContainer config; pod is the
// request's sandbox_config (the log directory and the pod's privileges
// come from it).
func validateContainerConfig(c *runtimeapi.ContainerConfig, pod *runtimeapi.PodSandboxConfig) error {
	if c == nil {
		return invalid("config: required")
	}
	if c.GetMetadata() == nil {
		return invalid("config.metadata: required")
	}
	if err := checkName("config.metadata.name", c.GetMetadata().GetName()); err != nil {
		return err
	}
	if err := validateImageRef("config.image.image", c.GetImage().GetImage()); err != nil {
		return err
	}
	if err := checkExec(c); err != nil {
		return err
	}
	if wd := c.GetWorkingDir(); wd != "" {
		if err := checkPathChars("config.working_dir", wd); err != nil {
			return err
		}
		if !path.IsAbs(wd) {
			return invalid("config.working_dir: %q must be absolute", wd)
		}
	}
	if err := checkMounts(c.GetMounts(), c.GetLinux().GetSecurityContext().GetPrivileged()); err != nil {
		return err
	}
	if err := checkDevices(c.GetDevices()); err != nil {
		return err
	}
	for i, d := range c.GetCDIDevices() {
		if _, _, _, err := devices.ParseQualifiedName(d.GetName()); err != nil {
			return invalid("config.CDI_devices[%d].name: %v (want vendor/class=name)", i, err)
		}
	}
	if err := checkStringMap("config.labels", c.GetLabels()); err != nil {
		return err
	}
	if err := checkStringMap("config.annotations", c.GetAnnotations()); err != nil {
		return err
	}
	if err := checkLogPath(c.GetLogPath(), pod.GetLogDirectory()); err != nil {
		return err
	}
	if _, ok := runtimeapi.Signal_name[int32(c.GetStopSignal())]; !ok {
		return invalid("config.stop_signal: unknown signal %d", c.GetStopSignal())
	}
	if err := checkResources("config.linux.resources", c.GetLinux().GetResources()); err != nil {
		return err
	}
	sc := c.GetLinux().GetSecurityContext()
	if sc.GetPrivileged() && !pod.GetLinux().GetSecurityContext().GetPrivileged() {
		return invalid("config.linux.security_context.privileged: the pod is not privileged")
	}
	return checkContainerSecurityContext("config.linux.security_context", sc)
}

// validateLinuxResources checks container resources; field names are those
// of UpdateContainerResourcesRequest ("linux.cpu_shares").
func validateLinuxResources(r *runtimeapi.LinuxContainerResources) error {
	return checkResources("linux", r)
}

// checkExec checks command, args and envs: valid UTF-8 without NUL (execve
// can not pass it), env keys non-empty without '=', all bounded.
func checkExec(c *runtimeapi.ContainerConfig) error {
	total := 0
	for _, l := range []struct {
		field string
		l     []string
	}{{"config.command", c.GetCommand()}, {"config.args", c.GetArgs()}} {
		for i, s := range l.l {
			if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
				return invalid("%s[%d]: must be valid UTF-8 without NUL", l.field, i)
			}
			total += len(s) + 1
		}
	}
	for i, e := range c.GetEnvs() {
		k, v := e.GetKey(), e.GetValue()
		switch {
		case k == "":
			return invalid("config.envs[%d].key: required", i)
		case strings.ContainsAny(k, "=\x00") || !utf8.ValidString(k):
			return invalid("config.envs[%d].key: %q must be valid UTF-8 without '=' or NUL", i, k)
		case !utf8.Valid(v) || strings.ContainsRune(string(v), 0):
			return invalid("config.envs[%d].value: must be valid UTF-8 without NUL", i)
		}
		total += len(k) + len(v) + 2
	}
	if total > maxExecBytes {
		return invalid("config: command, args and envs are %d bytes, at most %d", total, maxExecBytes)
	}
	return nil
}

// checkMounts checks the CRI mounts: absolute clean paths, no mount over
// the rootfs root or /proc, no path mounted twice, recursive_read_only only
// with readonly (and private propagation), and no writable mount of the
// host's / or /proc into an unprivileged container. An image volume
// (Mount.image) has a valid image reference, no host path, is read-only
// (as kubelet sends every image volume, and containerd requires) and may
// name a relative image_sub_path that stays inside the image; no other
// mount has a sub path. The sandbox package repeats the host path check
// after resolving symlinks, and finds the image and the sub path.
func checkMounts(mounts []*runtimeapi.Mount, privileged bool) error {
	seen := map[string]int{}
	for i, m := range mounts {
		field := fmt.Sprintf("config.mounts[%d]", i)
		if m == nil {
			return invalid("%s: null", field)
		}
		dst := m.GetContainerPath()
		if err := checkAbsPath(field+".container_path", dst); err != nil {
			return err
		}
		clean := path.Clean(dst)
		switch {
		case clean == "/":
			return invalid("%s.container_path: can not mount over the container's root", field)
		case clean == "/proc" || strings.HasPrefix(clean, "/proc/"):
			return invalid("%s.container_path: %q: mounts over /proc are not allowed", field, dst)
		}
		if j, dup := seen[clean]; dup {
			return invalid("%s.container_path: %q is also mounts[%d]", field, dst, j)
		}
		seen[clean] = i
		if img := m.GetImage().GetImage(); img != "" {
			if m.GetHostPath() != "" {
				return invalid("%s.host_path: %q: an image volume has no host path (image %q)", field, m.GetHostPath(), img)
			}
			if err := validateImageRef(field+".image.image", img); err != nil {
				return err
			}
			if !m.GetReadonly() {
				return invalid("%s.readonly: image volumes are read-only: must be true", field)
			}
		} else {
			if err := checkAbsPath(field+".host_path", m.GetHostPath()); err != nil {
				return err
			}
			if !privileged && !m.GetReadonly() && spec.IsSensitiveHostPath(m.GetHostPath()) {
				return invalid("%s.host_path: %q may only be mounted read-only into an unprivileged container", field, m.GetHostPath())
			}
			if m.GetImageSubPath() != "" {
				return invalid("%s.image_sub_path: only an image volume has a sub path", field)
			}
		}
		if _, ok := runtimeapi.MountPropagation_name[int32(m.GetPropagation())]; !ok {
			return invalid("%s.propagation: unknown propagation %d", field, m.GetPropagation())
		}
		if m.GetRecursiveReadOnly() {
			if !m.GetReadonly() {
				return invalid("%s.recursive_read_only: needs readonly", field)
			}
			if m.GetPropagation() != runtimeapi.MountPropagation_PROPAGATION_PRIVATE {
				return invalid("%s.recursive_read_only: needs private propagation, not %s", field, m.GetPropagation())
			}
		}
		if sub := m.GetImageSubPath(); sub != "" && (path.IsAbs(sub) || hasDotDot(sub) || strings.ContainsRune(sub, 0)) {
			return invalid("%s.image_sub_path: %q must be relative without \"..\"", field, sub)
		}
		if err := checkMountOptions(field, m); err != nil {
			return err
		}
	}
	return nil
}

// wideningMountOptions are mount options that would give a volume more
// than its mount has (the mount(8) opposites of the allowed ones and their
// recursive forms; defaults is rw,suid,dev,exec), named in the error as
// such.
var wideningMountOptions = []string{"dev", "suid", "exec", "rdev", "rsuid", "rexec", "defaults"}

// checkMountOptions checks a mount's mount_options (CRI 1.37): each one of
// spec.BindMountOptions (nodev, noexec, nosuid, exactly so spelled),
// each at most once, and only on a host path mount (Kubernetes refuses
// bindMountOptions on image volumes). Duplicates are refused rather than
// merged: the API server rejects them in bindMountOptions, so kubelet
// never sends one, and a request that has them did not come through it.
// An empty string, an option with data ('=') or white space, and any
// other mount option (dev, suid, exec, rw, ro, bind, shared, remount...)
// is refused: the volume's read-only state and propagation have fields of
// their own, and nothing here may widen what the volume allows.
func checkMountOptions(field string, m *runtimeapi.Mount) error {
	opts := m.GetMountOptions()
	if len(opts) == 0 {
		return nil
	}
	if m.GetHostPath() == "" && m.GetImage().GetImage() != "" {
		return invalid("%s.mount_options: not supported on image volumes", field)
	}
	allowed := strings.Join(spec.BindMountOptions(), ", ")
	for i, o := range opts {
		f := fmt.Sprintf("%s.mount_options[%d]", field, i)
		switch {
		case o == "":
			return invalid("%s: empty (want one of %s)", f, allowed)
		case spec.IsBindMountOption(o):
			if j := slices.Index(opts, o); j < i {
				return invalid("%s: %q is also mount_options[%d]", f, o, j)
			}
		case slices.Contains(wideningMountOptions, o):
			return invalid("%s: %q would widen what the volume allows (want one of %s)", f, o, allowed)
		case (o == "rw" || o == "rrw") && m.GetReadonly():
			return invalid("%s: %q would make the read-only volume writable (want one of %s)", f, o, allowed)
		case strings.ContainsRune(o, '=') || hasSpaceOrControl(o):
			return invalid("%s: %.64q is not a flag (want one of %s)", f, o, allowed)
		default:
			return invalid("%s: %.64q is not one of %s", f, o, allowed)
		}
	}
	return nil
}

// checkDevices checks the CRI devices: host and container paths absolute,
// clean and under /dev, permissions some of "rwm".
func checkDevices(devs []*runtimeapi.Device) error {
	for i, d := range devs {
		field := fmt.Sprintf("config.devices[%d]", i)
		if d == nil {
			return invalid("%s: null", field)
		}
		for _, p := range []struct{ name, v string }{{"container_path", d.GetContainerPath()}, {"host_path", d.GetHostPath()}} {
			if err := checkAbsPath(field+"."+p.name, p.v); err != nil {
				return err
			}
			if !strings.HasPrefix(p.v, "/dev/") || len(strings.TrimRight(p.v, "/")) <= len("/dev") {
				return invalid("%s.%s: %q must be under /dev", field, p.name, p.v)
			}
		}
		if perms := d.GetPermissions(); perms == "" || strings.Trim(perms, "rwm") != "" {
			return invalid("%s.permissions: %q must be some of r, w and m", field, perms)
		}
	}
	return nil
}

// checkLogPath checks a container log path: relative to the pod's log
// directory (which must be set), clean, and inside it.
func checkLogPath(logPath, logDir string) error {
	if logPath == "" {
		return nil
	}
	if err := checkPathChars("config.log_path", logPath); err != nil {
		return err
	}
	switch {
	case logDir == "":
		return invalid("config.log_path: set without the pod's log_directory")
	case path.IsAbs(logPath):
		return invalid("config.log_path: %q must be relative to the pod's log_directory", logPath)
	case hasDotDot(logPath) || path.Clean(logPath) != logPath || logPath == ".":
		return invalid("config.log_path: %q must be a clean relative path without \"..\"", logPath)
	}
	return nil
}

func checkContainerSecurityContext(field string, sc *runtimeapi.LinuxContainerSecurityContext) error {
	if sc == nil {
		return nil
	}
	if err := checkUserGroup(field, sc.GetRunAsUser(), sc.GetRunAsGroup(), sc.GetRunAsUsername()); err != nil {
		return err
	}
	if u := sc.GetRunAsUsername(); u != "" {
		if len(u) > maxUsernameLen || !utf8.ValidString(u) || strings.ContainsAny(u, ":/") || hasSpaceOrControl(u) {
			return invalid("%s.run_as_username: %q is not a user name", field, u)
		}
	}
	if err := checkGroups(field+".supplemental_groups", sc.GetSupplementalGroups()); err != nil {
		return err
	}
	if _, ok := runtimeapi.SupplementalGroupsPolicy_name[int32(sc.GetSupplementalGroupsPolicy())]; !ok {
		return invalid("%s.supplemental_groups_policy: unknown policy %d", field, sc.GetSupplementalGroupsPolicy())
	}
	caps := sc.GetCapabilities()
	for _, l := range []struct {
		name string
		l    []string
	}{
		{"add_capabilities", caps.GetAddCapabilities()},
		{"drop_capabilities", caps.GetDropCapabilities()},
		{"add_ambient_capabilities", caps.GetAddAmbientCapabilities()},
	} {
		for i, c := range l.l {
			if c == "" || len(c) > 64 || hasSpaceOrControl(c) {
				return invalid("%s.capabilities.%s[%d]: %q is not a capability name", field, l.name, i, c)
			}
		}
	}
	for _, l := range []struct {
		name string
		l    []string
	}{{"masked_paths", sc.GetMaskedPaths()}, {"readonly_paths", sc.GetReadonlyPaths()}} {
		for i, p := range l.l {
			if err := checkPathChars(fmt.Sprintf("%s.%s[%d]", field, l.name, i), p); err != nil {
				return err
			}
			if !path.IsAbs(p) {
				return invalid("%s.%s[%d]: %q must be absolute", field, l.name, i, p)
			}
		}
	}
	if err := checkProfile(field+".seccomp", sc.GetSeccomp(), true); err != nil {
		return err
	}
	if err := checkDeprecatedProfile(field+".seccomp_profile_path", sc.GetSeccompProfilePath(), true); err != nil {
		return err
	}
	if err := checkProfile(field+".apparmor", sc.GetApparmor(), false); err != nil {
		return err
	}
	if err := checkDeprecatedProfile(field+".apparmor_profile", sc.GetApparmorProfile(), false); err != nil {
		return err
	}
	ns := sc.GetNamespaceOptions()
	for _, m := range []struct {
		name string
		mode runtimeapi.NamespaceMode
	}{{"network", ns.GetNetwork()}, {"ipc", ns.GetIpc()}} {
		if m.mode == runtimeapi.NamespaceMode_TARGET {
			return invalid("%s.namespace_options.%s: mode TARGET is only for pid", field, m.name)
		}
		if _, ok := runtimeapi.NamespaceMode_name[int32(m.mode)]; !ok {
			return invalid("%s.namespace_options.%s: unknown mode %d", field, m.name, m.mode)
		}
	}
	switch ns.GetPid() {
	case runtimeapi.NamespaceMode_POD, runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_NODE:
	case runtimeapi.NamespaceMode_TARGET:
		if ns.GetTargetId() == "" {
			return invalid("%s.namespace_options.target_id: required with pid mode TARGET", field)
		}
	default:
		return invalid("%s.namespace_options.pid: unknown mode %d", field, ns.GetPid())
	}
	return checkUserns(field+".namespace_options.userns_options", ns.GetUsernsOptions())
}

// hugepageSize is a hugepage size as the kernel names it in cgroup files.
var hugepageSize = regexp.MustCompile(`^[1-9][0-9]*[KMGTP]B$`)

// unifiedKey is a cgroup v2 interface file name ("memory.high").
var unifiedKey = regexp.MustCompile(`^[a-z][a-z0-9_]*\.[a-z0-9_.]+$`)

// checkResources checks container (or pod) resources. Zero means unset, as
// kubelet sends it.
func checkResources(field string, r *runtimeapi.LinuxContainerResources) error {
	if r == nil {
		return nil
	}
	if p := r.GetCpuPeriod(); p != 0 && (p < 1000 || p > 1000000) {
		return invalid("%s.cpu_period: %d is not 0 or 1000-1000000 (µs)", field, p)
	}
	if q := r.GetCpuQuota(); q != 0 && q != -1 && q < 1000 {
		return invalid("%s.cpu_quota: %d is not 0, -1 or at least 1000 (µs)", field, q)
	}
	if s := r.GetCpuShares(); s != 0 && (s < 2 || s > 262144) {
		return invalid("%s.cpu_shares: %d is not 0 or 2-262144", field, s)
	}
	if m := r.GetMemoryLimitInBytes(); m < 0 {
		return invalid("%s.memory_limit_in_bytes: %d is negative", field, m)
	}
	if s := r.GetMemorySwapLimitInBytes(); s < -1 {
		return invalid("%s.memory_swap_limit_in_bytes: %d is not -1 (unlimited), 0 or positive", field, s)
	} else if m := r.GetMemoryLimitInBytes(); s > 0 && m > 0 && s < m {
		return invalid("%s.memory_swap_limit_in_bytes: %d is less than memory_limit_in_bytes %d (it limits memory plus swap)", field, s, m)
	}
	if o := r.GetOomScoreAdj(); o < -1000 || o > 1000 {
		return invalid("%s.oom_score_adj: %d is not in -1000-1000", field, o)
	}
	if err := checkCPUList(field+".cpuset_cpus", r.GetCpusetCpus()); err != nil {
		return err
	}
	if err := checkCPUList(field+".cpuset_mems", r.GetCpusetMems()); err != nil {
		return err
	}
	sizes := map[string]bool{}
	for i, h := range r.GetHugepageLimits() {
		if h == nil || !hugepageSize.MatchString(h.GetPageSize()) {
			return invalid("%s.hugepage_limits[%d].page_size: %q is not a size like 2MB or 1GB", field, i, h.GetPageSize())
		}
		if sizes[h.GetPageSize()] {
			return invalid("%s.hugepage_limits[%d].page_size: %s is listed twice", field, i, h.GetPageSize())
		}
		sizes[h.GetPageSize()] = true
	}
	if len(r.GetUnified()) > maxUnified {
		return invalid("%s.unified: %d entries, at most %d", field, len(r.GetUnified()), maxUnified)
	}
	keys := make([]string, 0, len(r.GetUnified()))
	for k := range r.GetUnified() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := r.GetUnified()[k]
		if !unifiedKey.MatchString(k) || strings.Contains(k, "..") {
			return invalid("%s.unified: %q is not a cgroup file name", field, k)
		}
		if len(v) > maxSysctlValue || !utf8.ValidString(v) || strings.ContainsAny(v, "\x00\n") {
			return invalid("%s.unified[%q]: value must be at most %d bytes without NUL or newline", field, k, maxSysctlValue)
		}
	}
	return nil
}

// checkCPUList checks a cpuset list like "0-3,5".
func checkCPUList(field, s string) error {
	if s == "" {
		return nil
	}
	if len(s) > maxPathLen {
		return invalid("%s: %d bytes, at most %d", field, len(s), maxPathLen)
	}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(lo)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || a < 0 || b < a || b >= maxCPUs || strings.HasPrefix(lo, "+") || strings.HasPrefix(hi, "+") {
			return invalid("%s: %q is not a list like 0-3,5", field, s)
		}
	}
	return nil
}
