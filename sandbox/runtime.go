package sandbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
)

// ErrRuntimeNotReady reports that containerd does not answer.
var ErrRuntimeNotReady = errors.New("containerd is not serving")

// Runtime runs pods and containers on one containerd.
type Runtime struct {
	client       *containerd.Client
	network      *Network
	oom          *OOMScoreRange
	cgroupDriver string
}

// Option configures a Runtime.
type Option func(*Runtime)

// WithNetwork sets the pod network.
func WithNetwork(n *Network) Option { return func(r *Runtime) { r.network = n } }

// WithOOMScoreRange sets the OOM score range found at start.
func WithOOMScoreRange(o *OOMScoreRange) Option { return func(r *Runtime) { r.oom = o } }

// WithCgroupDriver sets the resolved cgroup driver.
func WithCgroupDriver(d string) Option { return func(r *Runtime) { r.cgroupDriver = d } }

// New returns a Runtime over a connected containerd client.
func New(client *containerd.Client, opts ...Option) (*Runtime, error) {
	r := &Runtime{client: client, cgroupDriver: CgroupDriverCgroupfs}
	for _, o := range opts {
		o(r)
	}
	if r.network == nil {
		return nil, errors.New("sandbox: a network is required")
	}
	if r.oom == nil {
		r.oom = &OOMScoreRange{Min: oomScoreAdjMin}
	}
	return r, nil
}

// RuntimeReady is nil when containerd answers its health service.
func (r *Runtime) RuntimeReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ok, err := r.client.IsServing(ctx)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRuntimeNotReady, err)
	}
	if !ok {
		return ErrRuntimeNotReady
	}
	return nil
}

// NetworkReady is nil when a CNI network is configured and ready.
func (r *Runtime) NetworkReady(ctx context.Context) error { return r.network.Ready(ctx) }

// CgroupDriver is the cgroup driver pods are created with.
func (r *Runtime) CgroupDriver() string { return r.cgroupDriver }

// OOMScoreRange is what this host permits for containers' oom_score_adj.
func (r *Runtime) OOMScoreRange() *OOMScoreRange { return r.oom }
