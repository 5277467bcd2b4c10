package sandbox

import (
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestPodNeedsInfra(t *testing.T) {
	runc := withKind(&handler{runtimeType: RuntimeTypeRunc, binary: "runc"})
	crun := withKind(&handler{runtimeType: RuntimeTypeRunc, binary: "/usr/bin/crun"})
	gvisor := withKind(&handler{runtimeType: RuntimeTypeRunc, binary: "runsc", sandboxPerContainer: true})
	kata := withKind(&handler{runtimeType: "io.containerd.kata.v2"})
	pod := func(ns *runtimeapi.NamespaceOption) *runtimeapi.PodSandboxConfig {
		return &runtimeapi.PodSandboxConfig{Linux: &runtimeapi.LinuxPodSandboxConfig{
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: ns}}}
	}
	perContainer := &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}
	for _, tc := range []struct {
		desc   string
		cfg    *runtimeapi.PodSandboxConfig
		h      *handler
		always bool
		want   bool
	}{
		{"kubelet's default pod on runc", pod(perContainer), runc, false, false},
		{"crun", pod(perContainer), crun, false, false},
		{"host network and ipc", pod(&runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_CONTAINER}), runc, false, false},
		{"host user namespace", pod(&runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER, UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}}), runc, false, false},
		{"configured to always have one", pod(perContainer), runc, true, true},
		{"shared pid namespace", pod(&runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_POD}), runc, false, true},
		{"no namespace options (POD is the zero value)", pod(nil), runc, false, true},
		{"user namespace", pod(&runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER, UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD}}), runc, false, true},
		{"gVisor", pod(perContainer), gvisor, false, true},
		{"VM handler", pod(perContainer), kata, false, true},
	} {
		if got := podNeedsInfra(tc.cfg, tc.h, tc.always); got != tc.want {
			t.Errorf("%s: podNeedsInfra = %v, want %v", tc.desc, got, tc.want)
		}
	}
}
