package cri

import (
	"math"
	"net/netip"
	"path"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/internal/cgroups"
)

// This file validates RunPodSandbox's config, and holds the checks that
// pod and container validation share (names, paths, label maps, security
// profiles). Every rejection names the field path from the request.

const (
	// maxNameLen bounds metadata names (a Kubernetes DNS subdomain is at
	// most 253 bytes).
	maxNameLen = 253
	// maxHostnameLen is Linux's HOST_NAME_MAX.
	maxHostnameLen = 64
	// maxPathLen is Linux's PATH_MAX.
	maxPathLen = 4096
	// maxMapKeyLen bounds a label or annotation key (Kubernetes: 253 bytes
	// of prefix, '/', 63 bytes of name).
	maxMapKeyLen = 317
	// maxMapBytes bounds all keys and values of a label or annotation map
	// together: Kubernetes allows 256 KiB of annotations on an object and
	// kubelet adds a few of its own.
	maxMapBytes = 256<<10 + 16<<10
	// maxDNSEntries bounds each DNS list; maxDomainLen a search domain.
	maxDNSEntries = 32
	maxDomainLen  = 253
	// maxSysctlValue bounds a sysctl value (a page).
	maxSysctlValue = 4096
	// maxID is the largest uid or gid runc accepts.
	maxID = math.MaxInt32
)

// validatePodSandboxConfig checks a RunPodSandbox config before anything
// touches the host.
func validatePodSandboxConfig(c *runtimeapi.PodSandboxConfig) error {
	if c == nil {
		return invalid("config: required")
	}
	md := c.GetMetadata()
	if md == nil {
		return invalid("config.metadata: required")
	}
	for _, f := range []struct{ field, v string }{
		{"config.metadata.name", md.GetName()},
		{"config.metadata.namespace", md.GetNamespace()},
		{"config.metadata.uid", md.GetUid()},
	} {
		if err := checkName(f.field, f.v); err != nil {
			return err
		}
	}
	if h := c.GetHostname(); h != "" {
		if err := checkHostname("config.hostname", h); err != nil {
			return err
		}
	}
	if d := c.GetLogDirectory(); d != "" {
		if err := checkAbsPath("config.log_directory", d); err != nil {
			return err
		}
	}
	if err := checkDNS(c.GetDnsConfig()); err != nil {
		return err
	}
	for i, pm := range c.GetPortMappings() {
		if err := checkPortMapping(i, pm); err != nil {
			return err
		}
	}
	if err := checkStringMap("config.labels", c.GetLabels()); err != nil {
		return err
	}
	if err := checkStringMap("config.annotations", c.GetAnnotations()); err != nil {
		return err
	}
	return checkLinuxPod(c.GetLinux())
}

func checkLinuxPod(l *runtimeapi.LinuxPodSandboxConfig) error {
	if l == nil {
		return nil
	}
	if err := checkCgroupParent("config.linux.cgroup_parent", l.GetCgroupParent()); err != nil {
		return err
	}
	sc := l.GetSecurityContext()
	if err := checkPodSecurityContext("config.linux.security_context", sc); err != nil {
		return err
	}
	if err := checkSysctls("config.linux.sysctls", l.GetSysctls(), sc.GetNamespaceOptions()); err != nil {
		return err
	}
	if err := checkResources("config.linux.overhead", l.GetOverhead()); err != nil {
		return err
	}
	return checkResources("config.linux.resources", l.GetResources())
}

func checkPodSecurityContext(field string, sc *runtimeapi.LinuxSandboxSecurityContext) error {
	if sc == nil {
		return nil
	}
	if err := checkUserGroup(field, sc.GetRunAsUser(), sc.GetRunAsGroup(), ""); err != nil {
		return err
	}
	if err := checkGroups(field+".supplemental_groups", sc.GetSupplementalGroups()); err != nil {
		return err
	}
	if _, ok := runtimeapi.SupplementalGroupsPolicy_name[int32(sc.GetSupplementalGroupsPolicy())]; !ok {
		return invalid("%s.supplemental_groups_policy: unknown policy %d", field, sc.GetSupplementalGroupsPolicy())
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
	ns := sc.GetNamespaceOptions()
	for _, m := range []struct {
		name string
		mode runtimeapi.NamespaceMode
	}{
		{"network", ns.GetNetwork()}, {"pid", ns.GetPid()}, {"ipc", ns.GetIpc()},
	} {
		switch m.mode {
		case runtimeapi.NamespaceMode_POD, runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_NODE:
		default:
			return invalid("%s.namespace_options.%s: mode %s is not valid for a pod", field, m.name, m.mode)
		}
	}
	return checkUserns(field+".namespace_options.userns_options", ns.GetUsernsOptions())
}

// checkName checks a metadata name: required, at most 253 bytes of valid
// UTF-8 without '/', NUL, white space or control characters, not "." or "..".
func checkName(field, s string) error {
	switch {
	case s == "":
		return invalid("%s: required", field)
	case len(s) > maxNameLen:
		return invalid("%s: %d bytes, at most %d", field, len(s), maxNameLen)
	case !utf8.ValidString(s):
		return invalid("%s: not valid UTF-8", field)
	case strings.ContainsRune(s, '/'):
		return invalid("%s: %q contains '/'", field, s)
	case strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }):
		return invalid("%s: %q contains white space or control characters", field, s)
	case s == "." || s == "..":
		return invalid("%s: %q is not a name", field, s)
	}
	return nil
}

// checkHostname checks an RFC 1123 host name of at most 64 bytes.
func checkHostname(field, h string) error {
	if len(h) > maxHostnameLen {
		return invalid("%s: %d bytes, at most %d", field, len(h), maxHostnameLen)
	}
	for _, label := range strings.Split(h, ".") {
		if !isDNSLabel(label) {
			return invalid("%s: %q is not an RFC 1123 host name", field, h)
		}
	}
	return nil
}

// isDNSLabel: 1 to 63 letters, digits and '-', not starting or ending with '-'.
func isDNSLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// checkAbsPath checks an absolute, clean path: no ".", ".." or empty
// elements (one trailing '/' is tolerated), no NUL, at most PATH_MAX.
func checkAbsPath(field, p string) error {
	if err := checkPathChars(field, p); err != nil {
		return err
	}
	if !path.IsAbs(p) {
		return invalid("%s: %q must be absolute", field, p)
	}
	if trimmed := strings.TrimSuffix(p, "/"); p != "/" && path.Clean(p) != trimmed {
		return invalid("%s: %q must be clean (no \".\", \"..\" or empty elements)", field, p)
	}
	return nil
}

func checkPathChars(field, p string) error {
	switch {
	case p == "":
		return invalid("%s: required", field)
	case len(p) > maxPathLen:
		return invalid("%s: %d bytes, at most %d", field, len(p), maxPathLen)
	case !utf8.ValidString(p):
		return invalid("%s: not valid UTF-8", field)
	case strings.ContainsRune(p, 0):
		return invalid("%s: contains NUL", field)
	}
	return nil
}

// hasDotDot reports whether a slash separated path has a ".." element.
func hasDotDot(p string) bool {
	return slices.Contains(strings.Split(p, "/"), "..")
}

// checkStringMap checks labels or annotations: non-empty keys of at most
// 317 bytes, valid UTF-8, and all keys and values together bounded.
func checkStringMap(field string, m map[string]string) error {
	total := 0
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := m[k]
		switch {
		case k == "":
			return invalid("%s: empty key", field)
		case len(k) > maxMapKeyLen:
			return invalid("%s: key %.40q... is %d bytes, at most %d", field, k, len(k), maxMapKeyLen)
		case !utf8.ValidString(k):
			return invalid("%s: key %q is not valid UTF-8", field, k)
		case !utf8.ValidString(v):
			return invalid("%s[%q]: value is not valid UTF-8", field, k)
		}
		total += len(k) + len(v)
		if total > maxMapBytes {
			return invalid("%s: more than %d bytes of keys and values", field, maxMapBytes)
		}
	}
	return nil
}

func checkDNS(d *runtimeapi.DNSConfig) error {
	if d == nil {
		return nil
	}
	for _, l := range []struct {
		name string
		l    []string
	}{{"servers", d.GetServers()}, {"searches", d.GetSearches()}, {"options", d.GetOptions()}} {
		if len(l.l) > maxDNSEntries {
			return invalid("config.dns_config.%s: %d entries, at most %d", l.name, len(l.l), maxDNSEntries)
		}
	}
	for i, s := range d.GetServers() {
		if _, err := netip.ParseAddr(s); err != nil {
			return invalid("config.dns_config.servers[%d]: %q is not an IP address", i, s)
		}
	}
	// resolv.conf is line based: white space or control characters in an
	// entry would add lines or options.
	for i, s := range d.GetSearches() {
		if s == "" || len(s) > maxDomainLen || !utf8.ValidString(s) || hasSpaceOrControl(s) {
			return invalid("config.dns_config.searches[%d]: %q must be a domain of 1 to %d bytes without white space", i, s, maxDomainLen)
		}
	}
	for i, o := range d.GetOptions() {
		if o == "" || len(o) > maxDomainLen || !utf8.ValidString(o) || hasSpaceOrControl(o) {
			return invalid("config.dns_config.options[%d]: %q must be a non-empty option without white space", i, o)
		}
	}
	return nil
}

func hasSpaceOrControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) })
}

func checkPortMapping(i int, pm *runtimeapi.PortMapping) error {
	field := "config.port_mappings"
	if pm == nil {
		return invalid("%s[%d]: null", field, i)
	}
	if _, ok := runtimeapi.Protocol_name[int32(pm.GetProtocol())]; !ok {
		return invalid("%s[%d].protocol: unknown protocol %d (TCP, UDP or SCTP)", field, i, pm.GetProtocol())
	}
	if p := pm.GetContainerPort(); p < 1 || p > 65535 {
		return invalid("%s[%d].container_port: %d is not in 1-65535", field, i, p)
	}
	if p := pm.GetHostPort(); p < 0 || p > 65535 {
		return invalid("%s[%d].host_port: %d is not in 0-65535", field, i, p)
	}
	if ip := pm.GetHostIp(); ip != "" {
		if _, err := netip.ParseAddr(ip); err != nil {
			return invalid("%s[%d].host_ip: %q is not an IP address", field, i, ip)
		}
	}
	return nil
}

// checkCgroupParent accepts an absolute clean cgroup path (cgroupfs
// driver) or a systemd slice name like "kubepods-besteffort-pod1.slice".
// The sandbox package checks it against the driver in use.
func checkCgroupParent(field, p string) error {
	if p == "" {
		return nil
	}
	if err := checkPathChars(field, p); err != nil {
		return err
	}
	if hasDotDot(p) {
		return invalid("%s: %q contains \"..\"", field, p)
	}
	if strings.HasPrefix(p, "/") {
		if path.Clean(p) != p {
			return invalid("%s: %q must be a clean absolute path", field, p)
		}
		return nil
	}
	if !cgroups.IsSlice(p) {
		return invalid("%s: %q must be an absolute cgroup path or a systemd slice name", field, p)
	}
	return nil
}

// sysctlName is Kubernetes' sysctl name syntax ('.' or '/' separated).
var sysctlName = regexp.MustCompile(`^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$`)

// checkSysctls admits only sysctls of namespaces the pod owns (Kubernetes'
// namespaced set): IPC ones (kernel.shm*, kernel.msg*, kernel.sem,
// fs.mqueue.*) unless the pod shares the host IPC namespace, and net.*
// unless it shares the host network namespace.
func checkSysctls(field string, s map[string]string, ns *runtimeapi.NamespaceOption) error {
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := s[k]
		if len(k) > 253 || !sysctlName.MatchString(k) {
			return invalid("%s: %q is not a sysctl name", field, k)
		}
		if len(v) > maxSysctlValue || !utf8.ValidString(v) || strings.ContainsAny(v, "\x00\n") {
			return invalid("%s[%q]: value must be at most %d bytes without NUL or newline", field, k, maxSysctlValue)
		}
		dotted := strings.ReplaceAll(k, "/", ".")
		switch {
		case dotted == "kernel.sem", strings.HasPrefix(dotted, "kernel.shm"), strings.HasPrefix(dotted, "kernel.msg"), strings.HasPrefix(dotted, "fs.mqueue."):
			if ns.GetIpc() == runtimeapi.NamespaceMode_NODE {
				return invalid("%s: %q sets the host's IPC namespace (the pod uses host IPC)", field, k)
			}
		case strings.HasPrefix(dotted, "net."):
			if ns.GetNetwork() == runtimeapi.NamespaceMode_NODE {
				return invalid("%s: %q sets the host's network namespace (the pod uses host network)", field, k)
			}
		default:
			return invalid("%s: %q is not a namespaced sysctl (allowed: kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*, net.*)", field, k)
		}
	}
	return nil
}

// checkUserGroup checks run_as_user, run_as_group and run_as_username: ids
// in 0..2^31-1, a group only with a user.
func checkUserGroup(field string, uid, gid *runtimeapi.Int64Value, username string) error {
	if uid != nil && (uid.GetValue() < 0 || uid.GetValue() > maxID) {
		return invalid("%s.run_as_user: %d is not in 0-%d", field, uid.GetValue(), maxID)
	}
	if gid != nil {
		if gid.GetValue() < 0 || gid.GetValue() > maxID {
			return invalid("%s.run_as_group: %d is not in 0-%d", field, gid.GetValue(), maxID)
		}
		if uid == nil && username == "" {
			return invalid("%s.run_as_group: needs run_as_user or run_as_username", field)
		}
	}
	return nil
}

func checkGroups(field string, groups []int64) error {
	for i, g := range groups {
		if g < 0 || g > maxID {
			return invalid("%s[%d]: %d is not in 0-%d", field, i, g, maxID)
		}
	}
	return nil
}

// checkProfile checks a seccomp (an absolute path) or AppArmor (a name)
// security profile.
func checkProfile(field string, sp *runtimeapi.SecurityProfile, seccomp bool) error {
	if sp == nil {
		return nil
	}
	ref := sp.GetLocalhostRef()
	switch sp.GetProfileType() {
	case runtimeapi.SecurityProfile_RuntimeDefault, runtimeapi.SecurityProfile_Unconfined:
		if ref != "" {
			return invalid("%s.localhost_ref: only for profile type Localhost", field)
		}
		return nil
	case runtimeapi.SecurityProfile_Localhost:
		return checkProfileRef(field+".localhost_ref", ref, seccomp)
	}
	return invalid("%s.profile_type: unknown type %d", field, sp.GetProfileType())
}

func checkProfileRef(field, ref string, seccomp bool) error {
	if seccomp {
		if err := checkAbsPath(field, ref); err != nil {
			return err
		}
		if hasDotDot(ref) {
			return invalid("%s: %q contains \"..\"", field, ref)
		}
		return nil
	}
	if ref == "" || len(ref) > maxPathLen || !utf8.ValidString(ref) || strings.ContainsRune(ref, 0) {
		return invalid("%s: %q must be a non-empty profile name without NUL", field, ref)
	}
	return nil
}

// checkDeprecatedProfile checks the string form of a profile:
// "runtime/default", "docker/default", "unconfined" or "localhost/<ref>".
func checkDeprecatedProfile(field, p string, seccomp bool) error {
	switch p {
	case "", "runtime/default", "docker/default", "unconfined":
		return nil
	}
	ref, ok := strings.CutPrefix(p, "localhost/")
	if !ok {
		return invalid("%s: %q is not runtime/default, unconfined or localhost/<profile>", field, p)
	}
	return checkProfileRef(field, ref, seccomp)
}

// checkUserns checks user namespace options: mode NODE without mappings or
// POD with uid and gid mappings of non-zero length.
func checkUserns(field string, u *runtimeapi.UserNamespace) error {
	if u == nil {
		return nil
	}
	for _, l := range []struct {
		name string
		l    []*runtimeapi.IDMapping
	}{{"uids", u.GetUids()}, {"gids", u.GetGids()}} {
		name := l.name
		for i, m := range l.l {
			if m.GetLength() == 0 {
				return invalid("%s.%s[%d].length: must be positive", field, name, i)
			}
			if uint64(m.GetHostId())+uint64(m.GetLength()) > 1<<32 || uint64(m.GetContainerId())+uint64(m.GetLength()) > 1<<32 {
				return invalid("%s.%s[%d]: overflows the id range", field, name, i)
			}
		}
	}
	switch u.GetMode() {
	case runtimeapi.NamespaceMode_NODE:
		if len(u.GetUids()) > 0 || len(u.GetGids()) > 0 {
			return invalid("%s: mode NODE takes no mappings", field)
		}
	case runtimeapi.NamespaceMode_POD:
		if len(u.GetUids()) == 0 || len(u.GetGids()) == 0 {
			return invalid("%s: mode POD needs uid and gid mappings", field)
		}
	default:
		return invalid("%s.mode: %s is not valid for a user namespace", field, u.GetMode())
	}
	return nil
}
