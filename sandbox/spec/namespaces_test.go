package spec

import (
	"cmp"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// nsString renders namespaces as "type" or "type=path", sorted.
func nsString(nss []runtimespec.LinuxNamespace) string {
	var out []string
	for _, n := range nss {
		s := string(n.Type)
		if n.Path != "" {
			s += "=" + n.Path
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

func TestSpecPodNamespaces(t *testing.T) {
	const netns = "/run/netns/p1"
	for _, tc := range []struct {
		desc    string
		opts    *runtimeapi.NamespaceOption
		netns   string
		want    string
		wantErr error
	}{
		{desc: "defaults", netns: netns, want: "ipc mount network=/run/netns/p1 pid uts"},
		{desc: "host network", opts: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}, want: "ipc mount pid"},
		{desc: "host ipc", opts: &runtimeapi.NamespaceOption{Ipc: runtimeapi.NamespaceMode_NODE}, netns: netns, want: "mount network=/run/netns/p1 pid uts"},
		{desc: "host pid", opts: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_NODE}, netns: netns, want: "ipc mount network=/run/netns/p1 uts"},
		{desc: "container pid", opts: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}, netns: netns, want: "ipc mount network=/run/netns/p1 pid uts"},
		{
			desc: "all host",
			opts: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE},
			want: "mount",
		},
		{desc: "missing netns path", wantErr: errdefs.ErrFailedPrecondition},
		{desc: "target pid for a pod", opts: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET}, netns: netns, wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			nss, err := podNamespaces(tc.opts, tc.netns)
			if checkErr(t, err, tc.wantErr) {
				if got := nsString(nss); got != tc.want {
					t.Errorf("namespaces = %q, want %q", got, tc.want)
				}
			}
		})
	}
}

func TestSpecContainerNamespaces(t *testing.T) {
	const netns = "/run/netns/p1"
	host := runtimeapi.NamespaceMode_NODE
	for _, tc := range []struct {
		desc       string
		pod, ctr   *runtimeapi.NamespaceOption
		netns      string
		sandboxPID uint32
		pinned     Pinned
		targetPID  uint32
		want       string
		wantErr    error
	}{
		{
			desc: "pod namespaces", netns: netns, sandboxPID: 10,
			want: "ipc=/proc/10/ns/ipc mount network=/run/netns/p1 pid=/proc/10/ns/pid uts=/proc/10/ns/uts",
		},
		{
			desc: "container pid", netns: netns, sandboxPID: 10,
			ctr:  &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
			want: "ipc=/proc/10/ns/ipc mount network=/run/netns/p1 pid uts=/proc/10/ns/uts",
		},
		{
			desc: "host pid", netns: netns, sandboxPID: 10,
			ctr:  &runtimeapi.NamespaceOption{Pid: host},
			want: "ipc=/proc/10/ns/ipc mount network=/run/netns/p1 uts=/proc/10/ns/uts",
		},
		{
			desc: "pod pid in a host pid pod", netns: netns, sandboxPID: 10,
			pod:  &runtimeapi.NamespaceOption{Pid: host},
			want: "ipc=/proc/10/ns/ipc mount network=/run/netns/p1 uts=/proc/10/ns/uts",
		},
		{
			desc: "target pid", netns: netns, sandboxPID: 10, targetPID: 20,
			ctr:  &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "c0"},
			want: "ipc=/proc/10/ns/ipc mount network=/run/netns/p1 pid=/proc/20/ns/pid uts=/proc/10/ns/uts",
		},
		{
			desc: "target not running", netns: netns, sandboxPID: 10,
			ctr:     &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "c0"},
			wantErr: errdefs.ErrFailedPrecondition,
		},
		{
			desc: "host network and ipc follow the pod", sandboxPID: 10,
			pod:  &runtimeapi.NamespaceOption{Network: host, Ipc: host},
			ctr:  &runtimeapi.NamespaceOption{},
			want: "mount pid=/proc/10/ns/pid",
		},
		{desc: "sandbox not running", netns: netns, wantErr: errdefs.ErrFailedPrecondition},
		{
			desc: "pod without pause: pinned uts and ipc", netns: netns, pinned: Pinned{UTS: "/run/p1/ns/uts", IPC: "/run/p1/ns/ipc"},
			ctr:  &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
			want: "ipc=/run/p1/ns/ipc mount network=/run/netns/p1 pid uts=/run/p1/ns/uts",
		},
		{
			desc: "pod without pause and host ipc", netns: netns, pinned: Pinned{UTS: "/run/p1/ns/uts"},
			pod:  &runtimeapi.NamespaceOption{Ipc: host},
			ctr:  &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
			want: "mount network=/run/netns/p1 pid uts=/run/p1/ns/uts",
		},
		{
			desc: "pod pid in a pod of per-container pid namespaces", netns: netns, pinned: Pinned{UTS: "/run/p1/ns/uts", IPC: "/run/p1/ns/ipc"},
			pod:  &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
			want: "ipc=/run/p1/ns/ipc mount network=/run/netns/p1 pid uts=/run/p1/ns/uts",
		},
		{
			desc: "pod without pause has no shared pid namespace", netns: netns, pinned: Pinned{UTS: "/run/p1/ns/uts", IPC: "/run/p1/ns/ipc"},
			wantErr: errdefs.ErrFailedPrecondition,
		},
		{desc: "missing netns", sandboxPID: 10, wantErr: errdefs.ErrFailedPrecondition},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			nss, err := containerNamespaces(tc.pod, tc.ctr, tc.netns, tc.sandboxPID, tc.pinned, tc.targetPID)
			if checkErr(t, err, tc.wantErr) {
				if got := nsString(nss); got != tc.want {
					t.Errorf("namespaces = %q, want %q", got, tc.want)
				}
			}
		})
	}
}

func TestSpecUserNamespace(t *testing.T) {
	m := func(c, h, l uint32) []*runtimeapi.IDMapping {
		return []*runtimeapi.IDMapping{{ContainerId: c, HostId: h, Length: l}}
	}
	pod := &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: m(0, 100000, 65536), Gids: m(0, 100000, 65536)}
	want := []runtimespec.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	two := append(m(0, 100000, 65536), m(65536, 300000, 65536)...)
	for _, tc := range []struct {
		desc       string
		pod, ctr   *runtimeapi.UserNamespace
		supported  bool
		pinned     string // the pod's pinned user namespace
		wantPath   string // user namespace of the container; "" for none
		wantPod    string // of the pause; "new" for a new one
		wantPodErr error
		wantErr    error // of the container
	}{
		{desc: "none"},
		{desc: "node", pod: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}, ctr: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}},
		{desc: "pod mode needs runc support", pod: pod, ctr: pod, wantPodErr: errdefs.ErrNotImplemented, wantErr: errdefs.ErrNotImplemented},
		{desc: "pod mode joins the pinned owner of the netns", pod: pod, ctr: pod, supported: true, pinned: "/run/p/ns/user", wantPod: "/run/p/ns/user", wantPath: "/proc/10/ns/user"},
		{desc: "pod mode on the host network: a new one", pod: pod, ctr: pod, supported: true, wantPod: "new", wantPath: "/proc/10/ns/user"},
		{
			desc: "two mappings", supported: true,
			pod:        &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: two, Gids: m(0, 100000, 65536)},
			wantPodErr: errdefs.ErrNotImplemented, wantErr: errdefs.ErrNotImplemented,
		},
		{
			desc: "overlapping mappings (critest)", supported: true,
			pod:        &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: append(m(0, 1000, 100000), m(0, 2000, 100000)...), Gids: append(m(0, 1000, 100000), m(0, 2000, 100000)...)},
			wantPodErr: errdefs.ErrNotImplemented, wantErr: errdefs.ErrNotImplemented,
		},
		{
			desc: "root not mapped (critest)", supported: true,
			pod:        &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: m(1, 1000, 100000), Gids: m(1, 1000, 100000)},
			wantPodErr: errdefs.ErrInvalidArgument, wantErr: errdefs.ErrInvalidArgument,
		},
		{
			desc: "gid root not mapped", supported: true,
			pod:        &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: m(0, 1000, 100000), Gids: m(1, 1000, 100000)},
			wantPodErr: errdefs.ErrInvalidArgument, wantErr: errdefs.ErrInvalidArgument,
		},
		{desc: "container mode (critest)", pod: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_CONTAINER}, wantPodErr: errdefs.ErrInvalidArgument, wantErr: errdefs.ErrInvalidArgument},
		{desc: "target mode (critest)", pod: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_TARGET}, wantPodErr: errdefs.ErrInvalidArgument, wantErr: errdefs.ErrInvalidArgument},
		{
			desc: "node with mappings", pod: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE, Uids: m(0, 1, 1)},
			wantPodErr: errdefs.ErrInvalidArgument, wantErr: errdefs.ErrInvalidArgument,
		},
		{
			desc: "pod without gid mappings", pod: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: m(0, 1, 1)}, supported: true,
			wantPodErr: errdefs.ErrInvalidArgument, wantErr: errdefs.ErrInvalidArgument,
		},
		{
			desc: "zero length mapping", pod: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: m(0, 1, 0), Gids: m(0, 1, 1)}, supported: true,
			wantPodErr: errdefs.ErrInvalidArgument, wantErr: errdefs.ErrInvalidArgument,
		},
		{
			desc: "overflowing mapping", pod: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: m(0, 1<<32-1, 2), Gids: m(0, 1, 1)}, supported: true,
			wantPodErr: errdefs.ErrInvalidArgument, wantErr: errdefs.ErrInvalidArgument,
		},
		{
			desc: "container differs from pod", pod: pod, supported: true, wantPod: "new",
			ctr:     &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: m(0, 1, 65536), Gids: m(0, 100000, 65536)},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{desc: "container without the pod's", pod: pod, supported: true, wantPod: "new", wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			popt, err := podUsernsOpt(tc.pod, tc.pinned, tc.supported)
			if checkErr(t, err, tc.wantPodErr) {
				got := ""
				if popt != nil {
					s := mustApply(t, popt)
					for _, n := range s.Linux.Namespaces {
						if n.Type == runtimespec.UserNamespace {
							got = cmp.Or(n.Path, "new")
						}
					}
					if !slices.Equal(s.Linux.UIDMappings, want) || !slices.Equal(s.Linux.GIDMappings, want) {
						t.Errorf("pod mappings = %v %v, want %v", s.Linux.UIDMappings, s.Linux.GIDMappings, want)
					}
				}
				if got != tc.wantPod {
					t.Errorf("pod user namespace = %q, want %q", got, tc.wantPod)
				}
			}
			copt, err := containerUsernsOpt(tc.pod, tc.ctr, 10, tc.supported)
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			got := ""
			if copt != nil {
				s := mustApply(t, copt)
				for _, n := range s.Linux.Namespaces {
					if n.Type == runtimespec.UserNamespace {
						got = n.Path
					}
				}
				if !slices.Equal(s.Linux.UIDMappings, want) {
					t.Errorf("container uid mappings = %v, want %v", s.Linux.UIDMappings, want)
				}
			}
			if got != tc.wantPath {
				t.Errorf("user namespace = %q, want %q", got, tc.wantPath)
			}
		})
	}
}
