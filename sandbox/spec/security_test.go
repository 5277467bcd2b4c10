package spec

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/containerd/containerd/v2/pkg/cap"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestSpecCapabilities(t *testing.T) {
	current, err := cap.Current()
	if err != nil {
		t.Fatal(err)
	}
	without := func(l []string, drop ...string) []string {
		return slices.DeleteFunc(slices.Clone(l), func(c string) bool { return slices.Contains(drop, c) })
	}
	for _, tc := range []struct {
		desc        string
		caps        *runtimeapi.Capability
		want        []string
		wantAmbient []string
		wantErr     error
	}{
		{desc: "defaults", want: defaultCapabilities},
		{desc: "drop one", caps: &runtimeapi.Capability{DropCapabilities: []string{"CHOWN"}}, want: without(defaultCapabilities, "CAP_CHOWN")},
		{desc: "drop ALL", caps: &runtimeapi.Capability{DropCapabilities: []string{"ALL"}}, want: nil},
		{desc: "drop ALL then add one", caps: &runtimeapi.Capability{DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"NET_BIND_SERVICE"}}, want: []string{"CAP_NET_BIND_SERVICE"}},
		{desc: "add one, any case, with prefix", caps: &runtimeapi.Capability{AddCapabilities: []string{"cap_sys_admin"}}, want: append(slices.Clone(defaultCapabilities), "CAP_SYS_ADMIN")},
		{desc: "add ALL", caps: &runtimeapi.Capability{AddCapabilities: []string{"ALL"}}, want: current},
		{desc: "add ALL drop one", caps: &runtimeapi.Capability{AddCapabilities: []string{"ALL"}, DropCapabilities: []string{"NET_RAW"}}, want: without(current, "CAP_NET_RAW")},
		{desc: "add and drop the same adds", caps: &runtimeapi.Capability{AddCapabilities: []string{"KILL"}, DropCapabilities: []string{"KILL"}}, want: append(without(defaultCapabilities, "CAP_KILL"), "CAP_KILL")},
		{
			desc:        "ambient",
			caps:        &runtimeapi.Capability{DropCapabilities: []string{"ALL"}, AddAmbientCapabilities: []string{"NET_BIND_SERVICE"}},
			want:        []string{"CAP_NET_BIND_SERVICE"},
			wantAmbient: []string{"CAP_NET_BIND_SERVICE"},
		},
		{desc: "unknown", caps: &runtimeapi.Capability{AddCapabilities: []string{"FLY"}}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "unknown drop", caps: &runtimeapi.Capability{DropCapabilities: []string{"CAP_"}}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "ambient ALL", caps: &runtimeapi.Capability{AddAmbientCapabilities: []string{"ALL"}}, wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			c, err := containerCapabilities(tc.caps, current)
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			s := mustApply(t, withCapabilities(c))
			got := s.Process.Capabilities
			for name, set := range map[string][]string{"bounding": got.Bounding, "effective": got.Effective, "permitted": got.Permitted} {
				if !slices.Equal(set, tc.want) {
					t.Errorf("%s = %v, want %v", name, set, tc.want)
				}
			}
			if !slices.Equal(got.Ambient, tc.wantAmbient) || !slices.Equal(got.Inheritable, tc.wantAmbient) {
				t.Errorf("ambient %v inheritable %v, want %v", got.Ambient, got.Inheritable, tc.wantAmbient)
			}
		})
	}
	t.Run("a capability accel-cri lacks", func(t *testing.T) {
		var lacking string
		for _, c := range cap.Known() {
			if !slices.Contains(current, c) {
				lacking = c
				break
			}
		}
		if lacking == "" {
			t.Skip("accel-cri has every capability here")
		}
		_, err := containerCapabilities(&runtimeapi.Capability{AddCapabilities: []string{lacking}}, current)
		checkErr(t, err, errdefs.ErrFailedPrecondition)
	})
}

func writeProfile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "profile.json")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSpecSeccomp(t *testing.T) {
	good := writeProfile(t, `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read","write"],"action":"SCMP_ACT_ALLOW"}]}`)
	bad := writeProfile(t, `{"defaultAction":`)
	noAction := writeProfile(t, `{"syscalls":[]}`)
	missing := filepath.Join(t.TempDir(), "missing.json")
	for _, tc := range []struct {
		desc       string
		sp         *runtimeapi.SecurityProfile
		deprecated string
		privileged bool
		want       string // "", "default" or the profile's defaultAction
		wantErr    error
	}{
		{desc: "nothing asked"},
		{desc: "runtime default", sp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}, want: "default"},
		{desc: "unconfined", sp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}},
		{desc: "localhost", sp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: good}, want: "SCMP_ACT_ERRNO"},
		{desc: "localhost missing file", sp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: missing}, wantErr: errdefs.ErrNotFound},
		{desc: "localhost invalid json", sp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: bad}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "localhost without defaultAction", sp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: noAction}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "localhost relative path", sp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "profile.json"}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "localhost without ref", sp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "ref without localhost", sp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault, LocalhostRef: good}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "deprecated runtime/default", deprecated: "runtime/default", want: "default"},
		{desc: "deprecated docker/default", deprecated: "docker/default", want: "default"},
		{desc: "deprecated unconfined", deprecated: "unconfined"},
		{desc: "deprecated localhost", deprecated: "localhost/" + good, want: "SCMP_ACT_ERRNO"},
		{desc: "deprecated garbage", deprecated: "whatever", wantErr: errdefs.ErrInvalidArgument},
		{desc: "field wins over deprecated", sp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}, deprecated: "runtime/default"},
		{desc: "privileged runs unconfined", sp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}, privileged: true},
		// critest "should ignore a seccomp profile that blocks setting
		// hostname when privileged": containerd and CRI-O ignore it too.
		{desc: "privileged ignores a localhost profile", sp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: good}, privileged: true},
		{desc: "privileged ignores a deprecated localhost profile", deprecated: "localhost/" + good, privileged: true},
		{desc: "privileged does not read the profile", sp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: missing}, privileged: true},
		{desc: "privileged: a malformed profile is still refused", deprecated: "whatever", privileged: true, wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			opt, err := testBuilder(t).seccompOpt("seccomp", tc.sp, tc.deprecated, tc.privileged)
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			opts := []oci.SpecOpts{withCRIBase()}
			if opt != nil {
				opts = append(opts, opt)
			}
			s := mustApply(t, opts...)
			got := ""
			switch {
			case s.Linux.Seccomp == nil:
			case tc.want == "default":
				if len(s.Linux.Seccomp.Syscalls) > 10 && s.Linux.Seccomp.DefaultAction == runtimespec.ActErrno {
					got = "default"
				}
			default:
				got = string(s.Linux.Seccomp.DefaultAction)
			}
			if got != tc.want {
				t.Errorf("seccomp = %q (%v), want %q", got, s.Linux.Seccomp != nil, tc.want)
			}
		})
	}
}

func TestSpecAppArmor(t *testing.T) {
	for _, tc := range []struct {
		desc    string
		sc      *runtimeapi.LinuxContainerSecurityContext
		enabled bool
		want    string
		load    string // the default profile the core loads first
		wantErr error
	}{
		{desc: "nothing asked, no apparmor", sc: &runtimeapi.LinuxContainerSecurityContext{}},
		{desc: "runtime default, no apparmor", sc: &runtimeapi.LinuxContainerSecurityContext{Apparmor: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}}},
		{desc: "unconfined, no apparmor", sc: &runtimeapi.LinuxContainerSecurityContext{Apparmor: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}}},
		{
			desc:    "localhost, no apparmor",
			sc:      &runtimeapi.LinuxContainerSecurityContext{Apparmor: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "my-profile"}},
			wantErr: errdefs.ErrFailedPrecondition,
		},
		{desc: "deprecated localhost, no apparmor", sc: &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "localhost/my-profile"}, wantErr: errdefs.ErrFailedPrecondition},
		{desc: "deprecated runtime/default, no apparmor", sc: &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "runtime/default"}},
		{
			desc:    "localhost with apparmor",
			sc:      &runtimeapi.LinuxContainerSecurityContext{Apparmor: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "my-profile"}},
			enabled: true,
			want:    "my-profile",
		},
		{desc: "deprecated localhost with apparmor", sc: &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "localhost/my-profile"}, enabled: true, want: "my-profile"},
		{desc: "unconfined with apparmor", sc: &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "unconfined"}, enabled: true},
		{desc: "nothing asked with apparmor: the default profile", sc: &runtimeapi.LinuxContainerSecurityContext{}, enabled: true, want: appArmorDefaultProfile, load: appArmorDefaultProfile},
		{
			desc:    "runtime default with apparmor",
			sc:      &runtimeapi.LinuxContainerSecurityContext{Apparmor: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}},
			enabled: true, want: appArmorDefaultProfile, load: appArmorDefaultProfile,
		},
		{desc: "privileged with apparmor: none", sc: &runtimeapi.LinuxContainerSecurityContext{Privileged: true}, enabled: true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			opt, load, err := appArmorOpt(tc.sc, tc.enabled)
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			if load != tc.load {
				t.Errorf("profile to load = %q, want %q", load, tc.load)
			}
			opts := []oci.SpecOpts{withCRIBase()}
			if opt != nil {
				opts = append(opts, opt)
			}
			if s := mustApply(t, opts...); s.Process.ApparmorProfile != tc.want {
				t.Errorf("apparmor profile = %q, want %q", s.Process.ApparmorProfile, tc.want)
			}
		})
	}
}

func TestSpecProcPaths(t *testing.T) {
	defMasked, defRO := defaultProcPaths()
	if !slices.Contains(defMasked, "/proc/kcore") || !slices.Contains(defRO, "/proc/sys") {
		t.Fatalf("containerd defaults not found: %v %v", defMasked, defRO)
	}
	for _, tc := range []struct {
		desc               string
		sc                 *runtimeapi.LinuxContainerSecurityContext
		privileged         bool
		wantMasked, wantRO []string
	}{
		{desc: "containerd defaults", sc: &runtimeapi.LinuxContainerSecurityContext{}, wantMasked: defMasked, wantRO: defRO},
		{
			desc:       "from the CRI",
			sc:         &runtimeapi.LinuxContainerSecurityContext{MaskedPaths: []string{"/proc/a"}, ReadonlyPaths: []string{"/proc/b"}},
			wantMasked: []string{"/proc/a"},
			wantRO:     []string{"/proc/b"},
		},
		{desc: "privileged clears them", sc: &runtimeapi.LinuxContainerSecurityContext{MaskedPaths: []string{"/proc/a"}}, privileged: true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			opts := []oci.SpecOpts{oci.WithMaskedPaths(nil), oci.WithReadonlyPaths(nil), withProcPaths(tc.sc)}
			if tc.privileged {
				opts = append(opts, withPrivileged(nil, nil, true))
			}
			s := mustApply(t, opts...)
			if !slices.Equal(s.Linux.MaskedPaths, tc.wantMasked) || !slices.Equal(s.Linux.ReadonlyPaths, tc.wantRO) {
				t.Errorf("masked %v readonly %v, want %v %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths, tc.wantMasked, tc.wantRO)
			}
		})
	}
}

func TestSpecPrivileged(t *testing.T) {
	current, err := cap.Current()
	if err != nil {
		t.Fatal(err)
	}
	hostDevs, err := oci.HostDevices()
	if err != nil {
		t.Fatal(err)
	}
	mounts := withBindMounts(nil)
	s := mustApply(t, mounts, withPrivileged(current, hostDevs, true))
	if !slices.Equal(s.Process.Capabilities.Bounding, current) || !slices.Equal(s.Process.Capabilities.Effective, current) {
		t.Errorf("capabilities = %v, want %v", s.Process.Capabilities.Bounding, current)
	}
	for _, m := range s.Mounts {
		if (m.Type == "sysfs" || m.Type == "cgroup") && slices.Contains(m.Options, "ro") {
			t.Errorf("%s mount %s is read-only: %v", m.Type, m.Destination, m.Options)
		}
	}
	if !slices.ContainsFunc(s.Linux.Devices, func(d runtimespec.LinuxDevice) bool { return d.Path == "/dev/null" }) {
		t.Errorf("host devices missing: %d devices", len(s.Linux.Devices))
	}
	if r := s.Linux.Resources.Devices; len(r) != 1 || !r[0].Allow || r[0].Access != "rwm" || r[0].Major != nil {
		t.Errorf("device rules = %+v, want allow all", r)
	}
	if len(s.Linux.MaskedPaths) != 0 || len(s.Linux.ReadonlyPaths) != 0 {
		t.Errorf("masked %v readonly %v, want none", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
}
