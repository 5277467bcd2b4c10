package metrics

import (
	"strings"

	runtimespec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/accel-cri/accel-cri/sandbox"
)

// CountAllocations wraps a CDI injector so every device it gives a
// container counts in accel_cri_device_allocations_total{resource}, the
// resource being the CDI kind (accel-cri.io/intel-gpu for
// accel-cri.io/intel-gpu=0). Device plugin allocations end here too: kubelet
// passes the allocated CDI names to CreateContainer.
func (m *Metrics) CountAllocations(inj sandbox.CDIInjector) sandbox.CDIInjector {
	return countingInjector{next: inj, m: m}
}

type countingInjector struct {
	next sandbox.CDIInjector
	m    *Metrics
}

func (c countingInjector) Check(names []string) error { return c.next.Check(names) }

func (c countingInjector) Inject(spec *runtimespec.Spec, names []string) error {
	if err := c.next.Inject(spec, names); err != nil {
		return err
	}
	for _, n := range names {
		kind, _, _ := strings.Cut(n, "=")
		c.m.deviceAllocations.WithLabelValues(kind).Inc()
	}
	return nil
}
