package cri

import (
	"path"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/internal/testutil"
	"github.com/accel-cri/accel-cri/sandbox/spec"
)

// The fuzz targets of this file feed protobuf wire bytes, as kubelet would
// send them, to the request validators. Each checks that a validator
//   - never panics and rejects only with errdefs.ErrInvalidArgument (the
//     interceptor's InvalidArgument; anything else would reach kubelet as
//     Unknown),
//   - answers the same for the same request after a protobuf round trip
//     (validation does not depend on map order or on unknown fields),
//   - and, when it accepts, that the properties the host relies on hold.
// Seeds: the f.Add calls below plus testdata/fuzz/FuzzXxx (past bugs and
// edge cases). Run them with hack/fuzz.sh.

// maxFuzzInput bounds a fuzz input: validation of larger requests is
// covered by the unit tests (size limits) and would only slow the fuzzer.
const maxFuzzInput = 1 << 16

// checkRejection fails unless err is nil or an InvalidArgument naming a
// field, and returns whether err is nil.
func checkRejection(t *testing.T, what string, err error) bool {
	t.Helper()
	if err == nil {
		return true
	}
	if !errdefs.IsInvalidArgument(err) || codeOf(err).String() != "InvalidArgument" {
		t.Fatalf("%s: rejection %q is not InvalidArgument", what, err)
	}
	if !utf8.ValidString(err.Error()) {
		// Messages quote the input with %q, so they stay valid UTF-8:
		// gRPC status messages must be.
		t.Fatalf("%s: error message is not valid UTF-8: %q", what, err)
	}
	return false
}

// sameAfterRoundTrip checks that validate gives the same answer for m and
// for m marshalled and unmarshalled again.
func sameAfterRoundTrip[M proto.Message](t *testing.T, m M, fresh func() M, validate func(M) error) error {
	t.Helper()
	err := validate(m)
	again := fresh()
	if uerr := proto.Unmarshal(testutil.Marshal(t, m), again); uerr != nil {
		t.Fatalf("unmarshal of marshalled request: %v", uerr)
	}
	err2 := validate(again)
	if (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
		t.Fatalf("validation differs after a round trip: %v / %v", err, err2)
	}
	return err
}

func FuzzValidatePodSandboxConfig(f *testing.F) {
	f.Add(testutil.Marshal(f, validPod()))
	f.Add(testutil.Marshal(f, &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "a", Namespace: "b", Uid: "c"}}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxFuzzInput {
			return
		}
		c := &runtimeapi.PodSandboxConfig{}
		if proto.Unmarshal(data, c) != nil {
			return
		}
		err := sameAfterRoundTrip(t, c, func() *runtimeapi.PodSandboxConfig { return &runtimeapi.PodSandboxConfig{} }, validatePodSandboxConfig)
		if !checkRejection(t, "pod", err) {
			return
		}
		md := c.GetMetadata()
		for _, n := range []string{md.GetName(), md.GetNamespace(), md.GetUid()} {
			// Names become parts of file names and cgroup paths.
			if n == "" || n == "." || n == ".." || strings.ContainsAny(n, "/\x00") || !utf8.ValidString(n) {
				t.Fatalf("accepted metadata name %q", n)
			}
		}
		if d := c.GetLogDirectory(); d != "" && (!path.IsAbs(d) || hasDotDot(d)) {
			t.Fatalf("accepted log directory %q", d)
		}
		for _, pm := range c.GetPortMappings() {
			if pm.GetContainerPort() < 1 || pm.GetContainerPort() > 65535 || pm.GetHostPort() < 0 || pm.GetHostPort() > 65535 {
				t.Fatalf("accepted port mapping %v", pm)
			}
		}
		for _, s := range append(c.GetDnsConfig().GetSearches(), c.GetDnsConfig().GetOptions()...) {
			if strings.ContainsAny(s, "\n\r") {
				t.Fatalf("accepted DNS entry %q that adds a resolv.conf line", s)
			}
		}
		if p := c.GetLinux().GetCgroupParent(); hasDotDot(p) {
			t.Fatalf("accepted cgroup parent %q", p)
		}
		for k := range c.GetLinux().GetSysctls() {
			if !strings.HasPrefix(k, "net.") && !strings.HasPrefix(k, "net/") && !strings.HasPrefix(k, "kernel.") && !strings.HasPrefix(k, "fs.mqueue.") && !strings.HasPrefix(k, "fs/mqueue/") {
				t.Fatalf("accepted host sysctl %q", k)
			}
		}
	})
}

func FuzzValidateContainerConfig(f *testing.F) {
	f.Add(testutil.Marshal(f, validContainer()), testutil.Marshal(f, validPod()))
	f.Add(testutil.Marshal(f, &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "a"}, Image: &runtimeapi.ImageSpec{Image: "busybox"}, LogPath: "a/0.log"}),
		testutil.Marshal(f, &runtimeapi.PodSandboxConfig{LogDirectory: "/var/log/pods/x"}))
	f.Add(testutil.Marshal(f, &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "a"}, Image: &runtimeapi.ImageSpec{Image: "busybox"},
		Mounts: []*runtimeapi.Mount{{ContainerPath: "/m", HostPath: "/srv/m", MountOptions: []string{"noexec", "nodev", "nosuid"}}, {ContainerPath: "/n", HostPath: "/srv/n", MountOptions: []string{"exec", "noexec"}}}}),
		[]byte{})
	f.Add(testutil.Marshal(f, &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "a"}, Image: &runtimeapi.ImageSpec{Image: "busybox"},
		Mounts: []*runtimeapi.Mount{
			{ContainerPath: "/img", Image: &runtimeapi.ImageSpec{Image: "busybox"}, Readonly: true, ImageSubPath: "etc"},
			{ContainerPath: "/rw", Image: &runtimeapi.ImageSpec{Image: "busybox"}, ImageSubPath: "a/../../b"},
		}}),
		[]byte{})
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, data, podData []byte) {
		if len(data)+len(podData) > maxFuzzInput {
			return
		}
		c, pod := &runtimeapi.ContainerConfig{}, &runtimeapi.PodSandboxConfig{}
		if proto.Unmarshal(data, c) != nil || proto.Unmarshal(podData, pod) != nil {
			return
		}
		err := sameAfterRoundTrip(t, c, func() *runtimeapi.ContainerConfig { return &runtimeapi.ContainerConfig{} },
			func(c *runtimeapi.ContainerConfig) error { return validateContainerConfig(c, pod) })
		if !checkRejection(t, "container", err) {
			return
		}
		privileged := c.GetLinux().GetSecurityContext().GetPrivileged()
		if privileged && !pod.GetLinux().GetSecurityContext().GetPrivileged() {
			t.Fatal("accepted a privileged container in an unprivileged pod")
		}
		for _, m := range c.GetMounts() {
			dst := path.Clean(m.GetContainerPath())
			if !path.IsAbs(dst) || dst == "/" || dst == "/proc" || strings.HasPrefix(dst, "/proc/") {
				t.Fatalf("accepted mount at %q", m.GetContainerPath())
			}
			if hp := m.GetHostPath(); hp != "" && (!path.IsAbs(hp) || hasDotDot(hp)) {
				t.Fatalf("accepted host path %q", hp)
			}
			if !privileged && !m.GetReadonly() && m.GetHostPath() != "" && spec.IsSensitiveHostPath(m.GetHostPath()) {
				t.Fatalf("accepted a writable mount of host %q in an unprivileged container", m.GetHostPath())
			}
			// Bind mount options may only take away from what the volume
			// allows: exactly these three, each once, never on an image
			// volume. The set is spelled out here, not taken from the
			// validator.
			seen := map[string]bool{}
			for _, o := range m.GetMountOptions() {
				if (o != "nodev" && o != "noexec" && o != "nosuid") || seen[o] {
					t.Fatalf("accepted mount options %q", m.GetMountOptions())
				}
				seen[o] = true
			}
			if len(m.GetMountOptions()) > 0 && m.GetHostPath() == "" {
				t.Fatalf("accepted mount options %q on an image volume", m.GetMountOptions())
			}
			// An image volume is read-only, has no host path, and its sub
			// path cannot climb out of the image; no other mount has one.
			if m.GetImage().GetImage() != "" && (!m.GetReadonly() || m.GetHostPath() != "") {
				t.Fatalf("accepted image volume %+v", m)
			}
			if sub := m.GetImageSubPath(); sub != "" && (m.GetImage().GetImage() == "" || path.IsAbs(sub) || hasDotDot(sub)) {
				t.Fatalf("accepted image_sub_path %q (image %q)", sub, m.GetImage().GetImage())
			}
		}
		for _, d := range c.GetDevices() {
			for _, p := range []string{d.GetHostPath(), d.GetContainerPath()} {
				if !strings.HasPrefix(path.Clean(p), "/dev/") {
					t.Fatalf("accepted device path %q outside /dev", p)
				}
			}
		}
		if lp := c.GetLogPath(); lp != "" {
			// The log file kubelet reads must stay inside the pod's log
			// directory.
			dir := pod.GetLogDirectory()
			full := path.Join(dir, lp)
			if dir == "" || !strings.HasPrefix(full, path.Clean(dir)+"/") {
				t.Fatalf("accepted log path %q in %q (%q)", lp, dir, full)
			}
		}
		for _, cd := range c.GetCDIDevices() {
			vendorClass, name, _ := strings.Cut(cd.GetName(), "=")
			if strings.Count(vendorClass, "/") != 1 || strings.ContainsAny(name, "/\x00") {
				t.Fatalf("accepted CDI name %q", cd.GetName())
			}
		}
		for _, e := range c.GetEnvs() {
			if e.GetKey() == "" || strings.ContainsAny(e.GetKey(), "=\x00") {
				t.Fatalf("accepted env key %q", e.GetKey())
			}
		}
	})
}

func FuzzValidateLinuxResources(f *testing.F) {
	f.Add(testutil.Marshal(f, validContainer().GetLinux().GetResources()))
	f.Add(testutil.Marshal(f, &runtimeapi.LinuxContainerResources{CpuQuota: -1, MemorySwapLimitInBytes: -1, CpusetCpus: "0-3,5", Unified: map[string]string{"memory.high": "max"}}))
	f.Add(testutil.Marshal(f, &runtimeapi.LinuxContainerResources{CpusetCpus: "9223372036854775807-0"}))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxFuzzInput {
			return
		}
		r := &runtimeapi.LinuxContainerResources{}
		if proto.Unmarshal(data, r) != nil {
			return
		}
		err := sameAfterRoundTrip(t, r, func() *runtimeapi.LinuxContainerResources { return &runtimeapi.LinuxContainerResources{} }, validateLinuxResources)
		if !checkRejection(t, "resources", err) {
			return
		}
		if r.GetMemoryLimitInBytes() < 0 || r.GetOomScoreAdj() < -1000 || r.GetOomScoreAdj() > 1000 || r.GetCpuShares() < 0 || r.GetCpuPeriod() < 0 {
			t.Fatalf("accepted resources %v", r)
		}
		for k, v := range r.GetUnified() {
			// Keys become file names in the container's cgroup, values
			// one write to it.
			if strings.ContainsAny(k, "/\x00") || strings.Contains(k, "..") || strings.ContainsAny(v, "\n\x00") {
				t.Fatalf("accepted unified %q=%q", k, v)
			}
		}
	})
}

// FuzzValidateRequests covers the small validators of the other requests:
// exec, exec sync, attach, port-forward and the ids every request names.
// kind picks the request type the bytes are decoded as.
func FuzzValidateRequests(f *testing.F) {
	id := strings.Repeat("a", 64)
	f.Add(uint8(0), testutil.Marshal(f, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"true"}, Timeout: 10}))
	f.Add(uint8(1), testutil.Marshal(f, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sh"}, Stdin: true, Stdout: true, Tty: true}))
	f.Add(uint8(2), testutil.Marshal(f, &runtimeapi.AttachRequest{ContainerId: id, Stdout: true, Stderr: true}))
	f.Add(uint8(3), testutil.Marshal(f, &runtimeapi.PortForwardRequest{PodSandboxId: id, Port: []int32{80, 65535}}))
	f.Add(uint8(4), testutil.Marshal(f, &runtimeapi.StopContainerRequest{ContainerId: "../../etc"}))
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		if len(data) > maxFuzzInput {
			return
		}
		var (
			m        proto.Message
			validate func() error
			id       func() string
		)
		switch kind % 5 {
		case 0:
			r := &runtimeapi.ExecSyncRequest{}
			m, validate, id = r, func() error { return validateExecSync(r) }, r.GetContainerId
		case 1:
			r := &runtimeapi.ExecRequest{}
			m, validate, id = r, func() error { return validateExec(r) }, r.GetContainerId
		case 2:
			r := &runtimeapi.AttachRequest{}
			m, validate, id = r, func() error { return validateAttach(r) }, r.GetContainerId
		case 3:
			r := &runtimeapi.PortForwardRequest{}
			m, validate, id = r, func() error { return validatePortForward(r) }, r.GetPodSandboxId
		default:
			r := &runtimeapi.StopContainerRequest{}
			m, validate, id = r, func() error { return requireID("container_id", r.GetContainerId()) }, r.GetContainerId
		}
		if proto.Unmarshal(data, m) != nil {
			return
		}
		err := validate()
		if errdefs.IsNotFound(err) && codeOf(err).String() == "NotFound" && utf8.ValidString(err.Error()) {
			// An id accel-cri never hands out names nothing: NotFound
			// (and success for stop and remove).
			return
		}
		if !checkRejection(t, "request", err) {
			return
		}
		// Ids name state directories and containerd records.
		if s := id(); s == "" || len(s) > 128 || !isHex(s) {
			t.Fatalf("accepted id %q", s)
		}
		switch r := m.(type) {
		case *runtimeapi.ExecSyncRequest:
			if len(r.GetCmd()) == 0 || r.GetTimeout() < 0 {
				t.Fatalf("accepted exec sync %v", r)
			}
		case *runtimeapi.ExecRequest:
			if len(r.GetCmd()) == 0 || (r.GetTty() && r.GetStderr()) || !(r.GetStdin() || r.GetStdout() || r.GetStderr()) {
				t.Fatalf("accepted exec %v", r)
			}
		case *runtimeapi.PortForwardRequest:
			for _, p := range r.GetPort() {
				if p < 1 || p > 65535 {
					t.Fatalf("accepted port %d", p)
				}
			}
		}
	})
}

// FuzzValidateImageRef checks the image reference check of PullImage,
// ImageStatus, RemoveImage and CreateContainer.
func FuzzValidateImageRef(f *testing.F) {
	for _, s := range []string{"busybox", "registry.local:5000/a/b:1", "sha256:" + strings.Repeat("0", 64), "a b", "\xff", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		err := validateImageRef("image", ref)
		if !checkRejection(t, "image", err) {
			return
		}
		if ref == "" || !utf8.ValidString(ref) || strings.ContainsAny(ref, " \t\r\n\x00") {
			t.Fatalf("accepted image reference %q", ref)
		}
	})
}
