package podnet

import (
	"context"
	"time"

	gocni "github.com/containerd/go-cni"
)

// CNI operations reported to a CNIObserver.
const (
	CNISetup    = "setup"    // CNI ADD of a pod
	CNITeardown = "teardown" // CNI DEL of a pod
)

// CNIObserver is told how long each CNI ADD and DEL of a pod took and how it
// ended (metrics). It must not block: it runs on the pod's create/stop path.
type CNIObserver interface {
	ObserveCNI(op string, d time.Duration, err error)
}

// Option configures a Network.
type Option func(*networkOptions)

type networkOptions struct {
	observer CNIObserver
}

// WithCNIObserver reports every CNI ADD and DEL to o.
func WithCNIObserver(o CNIObserver) Option {
	return func(n *networkOptions) { n.observer = o }
}

// observeCNI wraps c so its Setup and Remove calls are timed for the
// observer of opts; without one c is returned as it is. Timing the plugin
// calls themselves keeps the hooks out of the pod code (cni.go).
func observeCNI(c gocni.CNI, opts []Option) gocni.CNI {
	var o networkOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.observer == nil {
		return c
	}
	return observedCNI{CNI: c, obs: o.observer}
}

type observedCNI struct {
	gocni.CNI
	obs CNIObserver
}

func (c observedCNI) Setup(ctx context.Context, id, path string, opts ...gocni.NamespaceOpts) (*gocni.Result, error) {
	start := time.Now()
	res, err := c.CNI.Setup(ctx, id, path, opts...)
	c.obs.ObserveCNI(CNISetup, time.Since(start), err)
	return res, err
}

func (c observedCNI) Remove(ctx context.Context, id, path string, opts ...gocni.NamespaceOpts) error {
	start := time.Now()
	err := c.CNI.Remove(ctx, id, path, opts...)
	c.obs.ObserveCNI(CNITeardown, time.Since(start), err)
	return err
}
