package spec

import (
	"context"
	"fmt"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/devices"
)

// This file adds the CDI devices a container asks for (the CRI
// cdi_devices field and cdi.k8s.io/* annotations) through the devices
// package's CDI injector.

// CDIInjector resolves and applies CDI devices (devices.Injector).
type CDIInjector interface {
	// Check fails with NotFound for names no spec defines.
	Check(names []string) error
	// Inject applies the devices' edits to spec.
	Inject(spec *runtimespec.Spec, names []string) error
}

// cdiDeviceNames are the CDI devices of cfg, checked against the specs.
func cdiDeviceNames(cfg *runtimeapi.ContainerConfig, inj CDIInjector) ([]string, error) {
	var field []string
	for _, d := range cfg.GetCDIDevices() {
		field = append(field, d.GetName())
	}
	names, err := devices.Names(field, cfg.GetAnnotations())
	if err != nil || len(names) == 0 {
		return nil, err
	}
	if inj == nil {
		return nil, fmt.Errorf("%w: CDI devices %v requested but CDI is not enabled on this node", errdefs.ErrFailedPrecondition, names)
	}
	if err := inj.Check(names); err != nil {
		return nil, err
	}
	return names, nil
}

// withCDIDevices applies the CDI devices; it runs after the user is set
// (node ownership and groups follow the process user).
func withCDIDevices(inj CDIInjector, names []string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if len(names) == 0 {
			return nil
		}
		return inj.Inject(s, names)
	}
}
