package spec

import (
	"reflect"
	"slices"
	"testing"

	"github.com/containerd/containerd/v2/contrib/seccomp"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// allowed reports whether profile p allows syscall name unconditionally
// (a rule without argument filters).
func allowed(p *runtimespec.LinuxSeccomp, name string) bool {
	for _, r := range p.Syscalls {
		if r.Action == runtimespec.ActAllow && len(r.Args) == 0 && slices.Contains(r.Names, name) {
			return true
		}
	}
	return false
}

// TestRuntimeDefaultSeccompIsContainerds: the RuntimeDefault profile of a
// container is exactly containerd's default profile (contrib/seccomp) for
// the container's final spec, capabilities included, and it blocks what
// that profile blocks.
func TestRuntimeDefaultSeccompIsContainerds(t *testing.T) {
	for _, tc := range []struct {
		desc       string
		caps       *runtimeapi.Capability
		blocked    []string // syscalls that must not be allowed outright
		allowedToo []string // syscalls the capabilities unlock
	}{
		{desc: "default capabilities", blocked: []string{"keyctl", "add_key", "request_key", "bpf", "kexec_load", "reboot", "init_module", "mount", "umount2", "unshare", "setns", "swapon", "acct", "settimeofday", "userfaultfd"}},
		{desc: "no capabilities", caps: &runtimeapi.Capability{DropCapabilities: []string{"ALL"}}, blocked: []string{"keyctl", "mount", "unshare", "reboot", "chroot"}},
		{desc: "SYS_ADMIN added", caps: &runtimeapi.Capability{AddCapabilities: []string{"SYS_ADMIN"}}, blocked: []string{"keyctl", "add_key", "kexec_load", "reboot"}, allowedToo: []string{"mount", "unshare", "setns"}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			p := testContainer(t)
			p.Config.Linux.SecurityContext.Capabilities = tc.caps
			p.Config.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
			s, err := applyContainer(t, testBuilder(t), p)
			if err != nil {
				t.Fatal(err)
			}
			if s.Linux.Seccomp == nil {
				t.Fatal("no seccomp profile")
			}
			want := seccomp.DefaultProfile(s)
			if !reflect.DeepEqual(s.Linux.Seccomp, want) {
				t.Fatalf("profile differs from containerd's default for the same spec (default action %s vs %s, %d vs %d rules)",
					s.Linux.Seccomp.DefaultAction, want.DefaultAction, len(s.Linux.Seccomp.Syscalls), len(want.Syscalls))
			}
			if s.Linux.Seccomp.DefaultAction != runtimespec.ActErrno {
				t.Errorf("default action %s, want SCMP_ACT_ERRNO", s.Linux.Seccomp.DefaultAction)
			}
			for _, sc := range tc.blocked {
				if allowed(s.Linux.Seccomp, sc) {
					t.Errorf("%s is allowed", sc)
				}
			}
			for _, sc := range tc.allowedToo {
				if !allowed(s.Linux.Seccomp, sc) {
					t.Errorf("%s is not allowed with %v", sc, tc.caps)
				}
			}
		})
	}
}
