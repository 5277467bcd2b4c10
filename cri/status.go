package cri

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/accel-cri/accel-cri/internal/cgroups"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Names this runtime reports to kubelet.
const (
	RuntimeName = "accel-cri"
	// kubeAPIVersion is the version of the kubelet-runtime API implemented
	// (the CRI asks for "0.1.0" here for historical reasons).
	kubeAPIVersion    = "0.1.0"
	runtimeAPIVersion = "v1"
)

// Reasons kubelet shows when a condition is false.
const (
	ReasonRuntimeNotReady = "ContainerdNotReady"
	ReasonNetworkNotReady = "NetworkPluginNotReady"
)

// Version reports the runtime's name and version.
func (s *Server) Version(ctx context.Context, req *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{
		Version:           kubeAPIVersion,
		RuntimeName:       RuntimeName,
		RuntimeVersion:    s.version.Version,
		RuntimeApiVersion: runtimeAPIVersion,
	}, nil
}

// Status reports whether containerd serves and the pod network is ready.
// It always answers, also while the managed containerd is restarting.
func (s *Server) Status(ctx context.Context, req *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	runtimeCond := condition(runtimeapi.RuntimeReady, s.runtime.RuntimeReady(ctx), ReasonRuntimeNotReady)
	networkCond := condition(runtimeapi.NetworkReady, s.runtime.NetworkReady(ctx), ReasonNetworkNotReady)
	var handlers []*runtimeapi.RuntimeHandler
	// RuntimeFeatures are the node's, not a handler's: kubelet turns
	// mount_options into the node's declared feature
	// VolumeBindMountOptions, and the scheduler then sends pods with
	// bindMountOptions of any RuntimeClass. So it is reported only when
	// every handler applies them; a container of a handler that does not
	// is refused (Unimplemented), never run without them.
	mountOptions := true
	// kubelet reads the default handler's features under the name "".
	for _, h := range s.runtime.Handlers() {
		handlers = append(handlers, &runtimeapi.RuntimeHandler{Name: h.Name, Features: &runtimeapi.RuntimeHandlerFeatures{
			RecursiveReadOnlyMounts: h.Features.RecursiveReadOnlyMounts,
			UserNamespaces:          h.Features.UserNamespaces,
		}})
		mountOptions = mountOptions && h.Features.MountOptions
	}
	resp := &runtimeapi.StatusResponse{
		Status:          &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{runtimeCond, networkCond}},
		RuntimeHandlers: handlers,
		Features: &runtimeapi.RuntimeFeatures{
			SupplementalGroupsPolicy: true,
			MountOptions:             mountOptions && len(handlers) > 0,
		},
	}
	if req.GetVerbose() && s.info != nil {
		info, err := verboseInfo(s.info())
		if err != nil {
			return nil, fmt.Errorf("status info: %w", err)
		}
		resp.Info = info
	}
	return resp, nil
}

func condition(typ string, err error, reason string) *runtimeapi.RuntimeCondition {
	if err == nil {
		return &runtimeapi.RuntimeCondition{Type: typ, Status: true}
	}
	return &runtimeapi.RuntimeCondition{Type: typ, Status: false, Reason: reason, Message: err.Error()}
}

// verboseInfo renders each value as JSON, as the CRI asks for Info maps.
func verboseInfo(m map[string]any) (map[string]string, error) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make(map[string]string, len(m))
	for _, k := range keys {
		b, err := json.Marshal(m[k])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		out[k] = string(b)
	}
	return out, nil
}

// RuntimeConfig reports the cgroup driver kubelet must use.
func (s *Server) RuntimeConfig(ctx context.Context, req *runtimeapi.RuntimeConfigRequest) (*runtimeapi.RuntimeConfigResponse, error) {
	driver := runtimeapi.CgroupDriver_CGROUPFS
	if s.runtime.CgroupDriver() == cgroups.DriverSystemd {
		driver = runtimeapi.CgroupDriver_SYSTEMD
	}
	return &runtimeapi.RuntimeConfigResponse{Linux: &runtimeapi.LinuxRuntimeConfiguration{CgroupDriver: driver}}, nil
}

// UpdateRuntimeConfig accepts the pod CIDR kubelet sends. The CNI config in
// the conf dir owns pod addressing, so there is nothing to change; a
// malformed CIDR is still refused.
func (s *Server) UpdateRuntimeConfig(ctx context.Context, req *runtimeapi.UpdateRuntimeConfigRequest) (*runtimeapi.UpdateRuntimeConfigResponse, error) {
	if cidr := req.GetRuntimeConfig().GetNetworkConfig().GetPodCidr(); cidr != "" {
		if err := validateCIDRs(cidr); err != nil {
			return nil, err
		}
	}
	return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
}

var errEmptyCIDR = errors.New("empty CIDR")
