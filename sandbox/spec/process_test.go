package spec

import (
	"slices"
	"testing"

	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestSpecContainerArgs(t *testing.T) {
	img := ocispec.ImageConfig{Entrypoint: []string{"/entry"}, Cmd: []string{"cmd", "arg"}}
	for _, tc := range []struct {
		desc          string
		command, args []string
		img           ocispec.ImageConfig
		want          []string
		wantErr       error
	}{
		{desc: "image entrypoint and cmd", img: img, want: []string{"/entry", "cmd", "arg"}},
		{desc: "command replaces entrypoint and drops cmd", command: []string{"/bin/sh"}, img: img, want: []string{"/bin/sh"}},
		{desc: "args replace cmd", args: []string{"x"}, img: img, want: []string{"/entry", "x"}},
		{desc: "command and args", command: []string{"/bin/sh"}, args: []string{"-c", "true"}, img: img, want: []string{"/bin/sh", "-c", "true"}},
		{desc: "cmd only image", img: ocispec.ImageConfig{Cmd: []string{"/cmd"}}, want: []string{"/cmd"}},
		{desc: "empty entrypoint string means none", img: ocispec.ImageConfig{Entrypoint: []string{""}, Cmd: []string{"/cmd"}}, want: []string{"/cmd"}},
		{desc: "nothing at all", wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := containerArgs(&runtimeapi.ContainerConfig{Command: tc.command, Args: tc.args}, tc.img)
			if checkErr(t, err, tc.wantErr) && !slices.Equal(got, tc.want) {
				t.Errorf("args = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSpecContainerEnv(t *testing.T) {
	for _, tc := range []struct {
		desc     string
		imageEnv []string
		envs     []*runtimeapi.KeyValue
		want     []string
	}{
		{
			desc: "defaults",
			want: []string{defaultPathEnv, "HOSTNAME=pod"},
		},
		{
			desc:     "image env overrides PATH, CRI env overrides image",
			imageEnv: []string{"PATH=/img", "A=image", "B=image"},
			envs:     []*runtimeapi.KeyValue{{Key: "B", Value: []byte("cri")}, {Key: "C", Value: []byte("x=y")}},
			want:     []string{"PATH=/img", "HOSTNAME=pod", "A=image", "B=cri", "C=x=y"},
		},
		{
			desc: "later CRI env wins",
			envs: []*runtimeapi.KeyValue{{Key: "A", Value: []byte("1")}, {Key: "A", Value: []byte("2")}},
			want: []string{defaultPathEnv, "HOSTNAME=pod", "A=2"},
		},
		{
			desc: "CRI env may set HOSTNAME",
			envs: []*runtimeapi.KeyValue{{Key: "HOSTNAME", Value: []byte("mine")}},
			want: []string{defaultPathEnv, "HOSTNAME=mine"},
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got := containerEnv(&runtimeapi.ContainerConfig{Envs: tc.envs}, ocispec.ImageConfig{Env: tc.imageEnv}, "pod")
			if !slices.Equal(got, tc.want) {
				t.Errorf("env = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSpecContainerProcess(t *testing.T) {
	for _, tc := range []struct {
		desc     string
		cfg      *runtimeapi.ContainerConfig
		img      ocispec.ImageConfig
		wantCwd  string
		wantTerm bool
	}{
		{desc: "working dir from config", cfg: &runtimeapi.ContainerConfig{WorkingDir: "/work"}, img: ocispec.ImageConfig{WorkingDir: "/img"}, wantCwd: "/work"},
		{desc: "working dir from image", cfg: &runtimeapi.ContainerConfig{}, img: ocispec.ImageConfig{WorkingDir: "/img"}, wantCwd: "/img"},
		{desc: "working dir default", cfg: &runtimeapi.ContainerConfig{}, wantCwd: "/"},
		{desc: "tty", cfg: &runtimeapi.ContainerConfig{Tty: true, Stdin: true}, wantCwd: "/", wantTerm: true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			tc.cfg.Command = []string{"/bin/true"}
			opt, err := withContainerProcess(tc.cfg, tc.img, "h")
			if err != nil {
				t.Fatal(err)
			}
			s := mustApply(t, opt)
			if s.Process.Cwd != tc.wantCwd {
				t.Errorf("cwd = %q, want %q", s.Process.Cwd, tc.wantCwd)
			}
			if s.Process.Terminal != tc.wantTerm {
				t.Errorf("terminal = %v, want %v", s.Process.Terminal, tc.wantTerm)
			}
			if got := slices.Contains(s.Process.Env, "TERM=xterm"); got != tc.wantTerm {
				t.Errorf("TERM=xterm in env = %v, want %v", got, tc.wantTerm)
			}
			if !slices.Equal(s.Process.Args, []string{"/bin/true"}) {
				t.Errorf("args = %q", s.Process.Args)
			}
		})
	}
}

func TestSpecPodProcess(t *testing.T) {
	for _, tc := range []struct {
		desc     string
		img      ocispec.ImageConfig
		wantArgs []string
		wantEnv  []string
		wantErr  error
	}{
		{
			desc:     "entrypoint, cmd and env",
			img:      ocispec.ImageConfig{Entrypoint: []string{"/pause"}, Cmd: []string{"-v"}, Env: []string{"A=1"}},
			wantArgs: []string{"/pause", "-v"},
			wantEnv:  []string{defaultPathEnv, "A=1"},
		},
		{desc: "no entrypoint or cmd", wantErr: errdefs.ErrFailedPrecondition},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			opt, err := withPodProcess(tc.img)
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			s := mustApply(t, opt)
			if !slices.Equal(s.Process.Args, tc.wantArgs) || !slices.Equal(s.Process.Env, tc.wantEnv) {
				t.Errorf("args %q env %q, want %q %q", s.Process.Args, s.Process.Env, tc.wantArgs, tc.wantEnv)
			}
		})
	}
}

func TestSpecContainerUser(t *testing.T) {
	i64 := func(v int64) *runtimeapi.Int64Value { return &runtimeapi.Int64Value{Value: v} }
	for _, tc := range []struct {
		desc      string
		sc        *runtimeapi.LinuxContainerSecurityContext
		imageUser string
		wantUID   uint32
		wantGID   uint32
		wantGids  []uint32
		wantErr   error
		wantAnErr bool
	}{
		{desc: "nothing set is root with root's groups", sc: &runtimeapi.LinuxContainerSecurityContext{}, wantGids: []uint32{0, 10}},
		{desc: "run_as_user from passwd", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(1000)}, wantUID: 1000, wantGID: 1000, wantGids: []uint32{10, 29, 1000}},
		{desc: "run_as_user unknown to passwd", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(4242)}, wantUID: 4242, wantGID: 0, wantGids: []uint32{0}},
		{desc: "run_as_user and run_as_group", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(1000), RunAsGroup: i64(50)}, wantUID: 1000, wantGID: 50, wantGids: []uint32{10, 29, 50}},
		{desc: "run_as_username", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUsername: "app"}, wantUID: 1000, wantGID: 1000, wantGids: []uint32{10, 29, 1000}},
		{desc: "run_as_username wins over run_as_user", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUsername: "other", RunAsUser: i64(1000)}, wantUID: 2000, wantGID: 2000, wantGids: []uint32{2000}},
		{desc: "unknown run_as_username", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUsername: "nobody"}, wantAnErr: true},
		{desc: "image user name", sc: &runtimeapi.LinuxContainerSecurityContext{}, imageUser: "app", wantUID: 1000, wantGID: 1000, wantGids: []uint32{10, 29, 1000}},
		{desc: "image user uid:gid", sc: &runtimeapi.LinuxContainerSecurityContext{}, imageUser: "2000:29", wantUID: 2000, wantGID: 29, wantGids: []uint32{29}},
		{desc: "CRI user wins over image user", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(2000)}, imageUser: "app", wantUID: 2000, wantGID: 2000, wantGids: []uint32{2000}},
		{
			desc:     "merge adds CRI supplemental groups",
			sc:       &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(1000), SupplementalGroups: []int64{5000, 10}},
			wantUID:  1000,
			wantGID:  1000,
			wantGids: []uint32{10, 29, 1000, 5000},
		},
		{
			desc:     "strict ignores /etc/group",
			sc:       &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(1000), SupplementalGroups: []int64{5000}, SupplementalGroupsPolicy: runtimeapi.SupplementalGroupsPolicy_Strict},
			wantUID:  1000,
			wantGID:  1000,
			wantGids: []uint32{1000, 5000},
		},
		{
			desc:     "strict with run_as_group",
			sc:       &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(1000), RunAsGroup: i64(50), SupplementalGroupsPolicy: runtimeapi.SupplementalGroupsPolicy_Strict},
			wantUID:  1000,
			wantGID:  50,
			wantGids: []uint32{50},
		},
		{desc: "group without user", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsGroup: i64(50)}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "unknown policy", sc: &runtimeapi.LinuxContainerSecurityContext{SupplementalGroupsPolicy: 7}, wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			opt, err := withContainerUser(tc.sc, ocispec.ImageConfig{User: tc.imageUser})
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			s, err := applySpec(t, oci.WithRootFSPath(testRootfs(t)), opt)
			if tc.wantAnErr {
				if err == nil {
					t.Fatal("want an error, got none")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			u := s.Process.User
			if u.UID != tc.wantUID || u.GID != tc.wantGID || !slices.Equal(u.AdditionalGids, tc.wantGids) {
				t.Errorf("user = %d:%d %v, want %d:%d %v", u.UID, u.GID, u.AdditionalGids, tc.wantUID, tc.wantGID, tc.wantGids)
			}
		})
	}
}

func TestSpecPodUser(t *testing.T) {
	i64 := func(v int64) *runtimeapi.Int64Value { return &runtimeapi.Int64Value{Value: v} }
	for _, tc := range []struct {
		desc      string
		sc        *runtimeapi.LinuxSandboxSecurityContext
		imageUser string
		wantUID   uint32
		wantGID   uint32
		wantGids  []uint32
		wantErr   error
	}{
		{desc: "image user", sc: &runtimeapi.LinuxSandboxSecurityContext{}, imageUser: "65535:65535", wantUID: 65535, wantGID: 65535, wantGids: []uint32{65535}},
		{desc: "run_as_user and group win", sc: &runtimeapi.LinuxSandboxSecurityContext{RunAsUser: i64(1000), RunAsGroup: i64(50)}, imageUser: "65535:65535", wantUID: 1000, wantGID: 50, wantGids: []uint32{50}},
		{desc: "supplemental groups", sc: &runtimeapi.LinuxSandboxSecurityContext{RunAsUser: i64(1000), SupplementalGroups: []int64{7}}, wantUID: 1000, wantGID: 1000, wantGids: []uint32{7, 1000}},
		{desc: "group without user", sc: &runtimeapi.LinuxSandboxSecurityContext{RunAsGroup: i64(5)}, wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			opt, err := withPodUser(tc.sc, ocispec.ImageConfig{User: tc.imageUser})
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			s := mustApply(t, oci.WithRootFSPath(testRootfs(t)), opt)
			u := s.Process.User
			if u.UID != tc.wantUID || u.GID != tc.wantGID || !slices.Equal(u.AdditionalGids, tc.wantGids) {
				t.Errorf("user = %d:%d %v, want %d:%d %v", u.UID, u.GID, u.AdditionalGids, tc.wantUID, tc.wantGID, tc.wantGids)
			}
		})
	}
}
