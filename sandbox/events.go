package sandbox

import (
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
)

// eventBuffer is how many events a slow subscriber may lag behind before
// events are dropped for it (kubelet's Evented PLEG relists periodically, so
// a drop delays, never loses, a state change).
const eventBuffer = 1024

// broadcaster fans container lifecycle events out to every subscriber
// (kubelet's GetContainerEvents streams).
type broadcaster struct {
	mu     sync.Mutex
	subs   map[chan *runtimeapi.ContainerEventResponse]struct{}
	closed bool
}

func newBroadcaster() *broadcaster {
	return &broadcaster{subs: map[chan *runtimeapi.ContainerEventResponse]struct{}{}}
}

// Subscribe returns a channel of events and a function that ends the
// subscription; the channel is closed when either is called or on Close.
func (r *Runtime) Subscribe() (<-chan *runtimeapi.ContainerEventResponse, func()) {
	return r.events.subscribe()
}

func (b *broadcaster) subscribe() (<-chan *runtimeapi.ContainerEventResponse, func()) {
	ch := make(chan *runtimeapi.ContainerEventResponse, eventBuffer)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		close(ch)
		return ch, func() {}
	}
	b.subs[ch] = struct{}{}
	return ch, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if _, ok := b.subs[ch]; ok {
			delete(b.subs, ch)
			close(ch)
		}
	}
}

func (b *broadcaster) publish(ev *runtimeapi.ContainerEventResponse) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs {
		select {
		case ch <- ev:
		default:
			klog.InfoS("Event subscriber is too slow; dropping event", "container", ev.ContainerId, "type", ev.ContainerEventType)
		}
	}
}

// active reports whether anyone listens, so events nobody would receive
// (no kubelet with Evented PLEG) are not built: each carries its pod's
// and containers' full statuses.
func (b *broadcaster) active() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs) > 0
}

func (b *broadcaster) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for ch := range b.subs {
		close(ch)
	}
	b.subs = map[chan *runtimeapi.ContainerEventResponse]struct{}{}
}

func (r *Runtime) publishPod(p *Pod, t runtimeapi.ContainerEventType) {
	if !r.events.active() {
		return
	}
	r.events.publish(&runtimeapi.ContainerEventResponse{
		ContainerId:        p.ID,
		ContainerEventType: t,
		CreatedAt:          time.Now().UnixNano(),
		PodSandboxStatus:   r.podSandboxStatus(p),
		ContainersStatuses: r.podContainerStatuses(p.ID),
	})
}

func (r *Runtime) publishContainer(c *Container, t runtimeapi.ContainerEventType) {
	if !r.events.active() {
		return
	}
	ev := &runtimeapi.ContainerEventResponse{
		ContainerId:        c.ID,
		ContainerEventType: t,
		CreatedAt:          time.Now().UnixNano(),
		ContainersStatuses: r.podContainerStatuses(c.PodID),
	}
	if p := r.store.podExact(c.PodID); p != nil {
		ev.PodSandboxStatus = r.podSandboxStatus(p)
	}
	r.events.publish(ev)
}

func (r *Runtime) podContainerStatuses(podID string) []*runtimeapi.ContainerStatus {
	var out []*runtimeapi.ContainerStatus
	for _, c := range r.store.podContainers(podID) {
		out = append(out, r.containerStatus(c))
	}
	return out
}
