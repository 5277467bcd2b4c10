package nri

import (
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/google/go-cmp/cmp"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/testing/protocmp"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func podConfig() *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:    &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "shop", Uid: "uid-1", Attempt: 2},
		Labels:      map[string]string{"app": "web"},
		Annotations: map[string]string{"note": "n"},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: "/kubepods/pod-uid-1",
			Resources:    &runtimeapi.LinuxContainerResources{CpuShares: 512, MemoryLimitInBytes: 1 << 30},
		},
	}
}

func TestToPod(t *testing.T) {
	shares, period, zero, mem := uint64(512), uint64(0), int64(0), int64(1<<30)
	ovShares, ovMem := uint64(0), int64(100)
	for _, tc := range []struct {
		desc string
		pod  Pod
		want *api.PodSandbox
	}{
		{
			desc: "a ready pod with a pause",
			pod: Pod{
				ID: "p1", Config: podConfig(), RuntimeHandler: "runc", CgroupsPath: "/kubepods/pod-uid-1/p1",
				Namespaces: []rspec.LinuxNamespace{{Type: rspec.NetworkNamespace, Path: "/run/netns/p1"}},
				PID:        42, IPs: []string{"10.0.0.2", "fd00::2"},
			},
			want: &api.PodSandbox{
				Id: "p1", Name: "web", Uid: "uid-1", Namespace: "shop",
				Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"note": "n"},
				RuntimeHandler: "runc",
				Linux: &api.LinuxPodSandbox{
					PodResources: &api.LinuxResources{
						Cpu:    &api.LinuxCPU{Shares: api.UInt64(&shares), Quota: api.Int64(&zero), Period: api.UInt64(&period)},
						Memory: &api.LinuxMemory{Limit: api.Int64(&mem)},
					},
					CgroupParent: "/kubepods/pod-uid-1", CgroupsPath: "/kubepods/pod-uid-1/p1",
					Namespaces: []*api.LinuxNamespace{{Type: "network", Path: "/run/netns/p1"}},
				},
				Pid: 42, Ips: []string{"10.0.0.2", "fd00::2"},
			},
		},
		{
			desc: "resources kubelet updated win over the config's",
			pod: Pod{
				ID: "p2", Config: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "x"}},
				Overhead: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 100},
			},
			want: &api.PodSandbox{
				Id: "p2", Name: "x", Labels: map[string]string{}, Annotations: map[string]string{},
				Linux: &api.LinuxPodSandbox{PodOverhead: &api.LinuxResources{
					Cpu:    &api.LinuxCPU{Shares: api.UInt64(&ovShares), Quota: api.Int64(&zero), Period: api.UInt64(&period)},
					Memory: &api.LinuxMemory{Limit: api.Int64(&ovMem)},
				}},
			},
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, toPod(tc.pod), protocmp.Transform()); diff != "" {
				t.Errorf("toPod (-want +got):\n%s", diff)
			}
		})
	}
}

func TestToContainer(t *testing.T) {
	created := time.Unix(100, 5)
	oom := 100
	cfg := &runtimeapi.ContainerConfig{
		Metadata:    &runtimeapi.ContainerMetadata{Name: "app", Attempt: 1},
		Labels:      map[string]string{"l": "1"},
		Annotations: map[string]string{"a": "cri"},
		CDIDevices:  []*runtimeapi.CDIDevice{{Name: "accel-cri.io/gpu=0"}},
		Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
		}},
	}
	spec := &rspec.Spec{
		Process: &rspec.Process{
			Args: []string{"/app"}, Env: []string{"A=1"}, OOMScoreAdj: &oom,
			User:    rspec.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{5}},
			Rlimits: []rspec.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 10, Soft: 5}},
		},
		Mounts:      []rspec.Mount{{Destination: "/data", Source: "/srv", Type: "bind", Options: []string{"rbind"}}},
		Annotations: map[string]string{"a": "spec", "io.kubernetes.cri.sandbox-id": "p1"},
		Linux: &rspec.Linux{
			CgroupsPath: "/kubepods/c1",
			Namespaces:  []rspec.LinuxNamespace{{Type: rspec.PIDNamespace}},
			Sysctl:      map[string]string{"net.core.somaxconn": "1024"},
		},
	}
	for _, tc := range []struct {
		desc string
		ctr  Container
		want *api.Container
	}{
		{
			desc: "running, with its spec",
			ctr: Container{
				ID: "c1", PodID: "p1", Config: cfg, Spec: spec, State: runtimeapi.ContainerState_CONTAINER_RUNNING, PID: 7,
				CreatedAt: created, StartedAt: created.Add(time.Second),
				ImageName: "busybox", ImageRef: "busybox@sha256:aa", ImageID: "sha256:bb",
			},
			want: &api.Container{
				Id: "c1", PodSandboxId: "p1", Name: "app", State: api.ContainerState_CONTAINER_RUNNING,
				Labels:      map[string]string{"l": "1"},
				Annotations: map[string]string{"a": "cri", "io.kubernetes.cri.sandbox-id": "p1"},
				Args:        []string{"/app"}, Env: []string{"A=1"},
				Mounts: []*api.Mount{{Destination: "/data", Source: "/srv", Type: "bind", Options: []string{"rbind"}}},
				Linux: &api.LinuxContainer{
					Namespaces:     []*api.LinuxNamespace{{Type: "pid"}},
					OomScoreAdj:    api.Int(&oom),
					CgroupsPath:    "/kubepods/c1",
					SeccompProfile: &api.SecurityProfile{ProfileType: api.SecurityProfile_RUNTIME_DEFAULT},
					Sysctl:         map[string]string{"net.core.somaxconn": "1024"},
				},
				Pid:        7,
				Rlimits:    []*api.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 10, Soft: 5}},
				CreatedAt:  created.UnixNano(),
				StartedAt:  created.Add(time.Second).UnixNano(),
				CDIDevices: []*api.CDIDevice{{Name: "accel-cri.io/gpu=0"}},
				User:       &api.User{Uid: 1000, Gid: 1000, AdditionalGids: []uint32{5}},
				Image:      &api.Image{Name: "busybox", Digest: "busybox@sha256:aa", ConfigDigest: "sha256:bb"},
			},
		},
		{
			desc: "exited, spec unknown",
			ctr: Container{
				ID: "c2", PodID: "p1", Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "job"}},
				State: runtimeapi.ContainerState_CONTAINER_EXITED, ExitCode: 3, Reason: "Error", Message: "boom",
				FinishedAt: created,
			},
			want: &api.Container{
				Id: "c2", PodSandboxId: "p1", Name: "job", State: api.ContainerState_CONTAINER_STOPPED,
				Labels: map[string]string{}, Annotations: map[string]string{},
				FinishedAt: created.UnixNano(), ExitCode: 3, StatusReason: "Error", StatusMessage: "boom",
			},
		},
		{
			desc: "being created",
			ctr: Container{
				ID: "c3", PodID: "p1", Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "new"}},
				State: runtimeapi.ContainerState_CONTAINER_UNKNOWN,
			},
			want: &api.Container{
				Id: "c3", PodSandboxId: "p1", Name: "new", State: api.ContainerState_CONTAINER_UNKNOWN,
				Labels: map[string]string{}, Annotations: map[string]string{},
			},
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got := toContainer(tc.ctr)
			if diff := cmp.Diff(tc.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("toContainer (-want +got):\n%s", diff)
			}
		})
	}
}
