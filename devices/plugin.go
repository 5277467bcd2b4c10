package devices

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/fsnotify/fsnotify"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/klog/v2"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// The kubelet device plugin: one plugin (socket, resource) per class that
// has devices, named accel-cri.io/<class>. Device IDs are the devices'
// first alias (UUID, PCI address) or name; with replicas > 1 a device is
// offered that many times as <id>::<n>. Allocate answers with the CDI names
// of the devices (and the same names as a cdi.k8s.io annotation for
// kubelets without CDI support in the device manager); accel-cri injects
// them at CreateContainer.

// replicaSep separates a device ID from its replica number.
const replicaSep = "::"

// Plugins serves the device plugins of a Manager's devices to kubelet and
// registers them again whenever kubelet restarts.
type Plugins struct {
	mgr      *Manager
	dir      string
	replicas map[string]int

	mu      sync.Mutex
	servers map[string]*pluginServer
}

// NewPlugins returns the device plugins for mgr's devices. dir is kubelet's
// device-plugin directory (kubelet.sock); replicas maps a class to how many
// containers may share each of its devices (1 when absent).
func NewPlugins(mgr *Manager, dir string, replicas map[string]int) *Plugins {
	return &Plugins{mgr: mgr, dir: dir, replicas: replicas, servers: map[string]*pluginServer{}}
}

// ResourceName is the extended resource of a class.
func ResourceName(class string) string { return Vendor + "/" + class }

// Run serves until ctx ends: it starts a plugin per class, registers them
// when kubelet.sock exists, and starts and registers again when kubelet
// (re)creates its socket, a plugin socket is removed, or classes change.
func (p *Plugins) Run(ctx context.Context) error {
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return fmt.Errorf("device plugins: %w", err)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("device plugins: %w", err)
	}
	defer w.Close()
	if err := w.Add(p.dir); err != nil {
		return fmt.Errorf("device plugins: watch %s: %w", p.dir, err)
	}
	changed, cancel := p.mgr.Subscribe()
	defer cancel()
	defer p.stopAll()
	p.restart(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			base := filepath.Base(ev.Name)
			switch {
			case base == "kubelet.sock" && ev.Has(fsnotify.Create):
				klog.InfoS("kubelet socket created; registering device plugins again")
				p.reregister(ctx)
			case ev.Has(fsnotify.Remove) && p.ownsSocket(ev.Name):
				klog.InfoS("Device plugin socket removed (kubelet restart?); serving again", "socket", ev.Name)
				p.restart(ctx)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			klog.ErrorS(err, "Device plugin directory watch")
		case <-changed:
			if !p.sameClasses() {
				p.restart(ctx)
			} else {
				p.mu.Lock()
				for _, s := range p.servers {
					s.update()
				}
				p.mu.Unlock()
			}
		}
	}
}

func (p *Plugins) classes() []string {
	seen := map[string]bool{}
	var out []string
	for _, d := range p.mgr.Devices() {
		if !seen[d.Class] {
			seen[d.Class] = true
			out = append(out, d.Class)
		}
	}
	sort.Strings(out)
	return out
}

func (p *Plugins) sameClasses() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	cs := p.classes()
	if len(cs) != len(p.servers) {
		return false
	}
	for _, c := range cs {
		if p.servers[c] == nil {
			return false
		}
	}
	return true
}

func (p *Plugins) ownsSocket(path string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.servers {
		if s.socket == path && !s.stopping() {
			// Our own restart removes and re-creates the socket: only a
			// socket that is still gone was removed by someone else.
			_, err := os.Stat(path)
			return os.IsNotExist(err)
		}
	}
	return false
}

func (p *Plugins) stopAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c, s := range p.servers {
		s.stop()
		delete(p.servers, c)
	}
}

// reregister registers the running plugins again (kubelet restarted); a
// plugin whose socket is gone is started again first.
func (p *Plugins) reregister(ctx context.Context) {
	p.mu.Lock()
	intact := true
	for _, s := range p.servers {
		if _, err := os.Stat(s.socket); err != nil {
			intact = false
		}
	}
	if intact {
		for _, s := range p.servers {
			go s.registerLoop(ctx, filepath.Join(p.dir, "kubelet.sock"))
		}
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	p.restart(ctx)
}

// restart stops every plugin, starts one per class and registers them
// (when kubelet is there; otherwise kubelet.sock's creation brings us back).
func (p *Plugins) restart(ctx context.Context) {
	p.stopAll()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.classes() {
		n := p.replicas[c]
		if n < 1 {
			n = 1
		}
		s := &pluginServer{mgr: p.mgr, class: c, replicas: n, socket: filepath.Join(p.dir, "accel-cri-"+c+".sock"), updates: map[chan struct{}]struct{}{}}
		if err := s.start(); err != nil {
			klog.ErrorS(err, "Start device plugin", "resource", ResourceName(c))
			continue
		}
		p.servers[c] = s
		go s.registerLoop(ctx, filepath.Join(p.dir, "kubelet.sock"))
	}
}

// registerLoop registers with kubelet, retrying for a while: kubelet's
// socket appears (bind) a moment before it accepts (listen). Without a
// socket it gives up; kubelet.sock's creation starts a new loop.
func (s *pluginServer) registerLoop(ctx context.Context, kubeletSocket string) {
	delay := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := s.register(ctx, kubeletSocket)
		if err == nil {
			klog.InfoS("Device plugin registered with kubelet", "resource", ResourceName(s.class), "socket", s.socket)
			return
		}
		if _, serr := os.Stat(kubeletSocket); serr != nil || attempt >= 20 || s.stopping() {
			klog.InfoS("Device plugin not registered (waiting for kubelet)", "resource", ResourceName(s.class), "err", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
	}
}

// pluginServer is the device plugin of one class.
type pluginServer struct {
	pluginapi.UnimplementedDevicePluginServer
	mgr      *Manager
	class    string
	replicas int
	socket   string

	mu      sync.Mutex
	g       *grpc.Server
	stopped bool
	updates map[chan struct{}]struct{}
}

func (s *pluginServer) start() error {
	_ = os.Remove(s.socket)
	lis, err := net.Listen("unix", s.socket)
	if err != nil {
		return err
	}
	s.g = grpc.NewServer()
	pluginapi.RegisterDevicePluginServer(s.g, s)
	go func() {
		if err := s.g.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			klog.ErrorS(err, "Device plugin server", "socket", s.socket)
		}
	}()
	return nil
}

func (s *pluginServer) stopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped
}

func (s *pluginServer) stop() {
	s.mu.Lock()
	s.stopped = true
	for ch := range s.updates {
		close(ch)
	}
	s.updates = map[chan struct{}]struct{}{}
	s.mu.Unlock()
	if s.g != nil {
		s.g.Stop()
	}
	_ = os.Remove(s.socket)
}

// update tells the ListAndWatch streams that devices changed.
func (s *pluginServer) update() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.updates {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (s *pluginServer) register(ctx context.Context, kubeletSocket string) error {
	if _, err := os.Stat(kubeletSocket); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+kubeletSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = pluginapi.NewRegistrationClient(conn).Register(ctx, &pluginapi.RegisterRequest{
		Version:      pluginapi.Version,
		Endpoint:     filepath.Base(s.socket),
		ResourceName: ResourceName(s.class),
		Options:      &pluginapi.DevicePluginOptions{},
	})
	return err
}

// deviceID is the kubelet device ID of d (before replicas).
func deviceID(d Device) string {
	if len(d.Aliases) > 0 {
		return d.Aliases[0]
	}
	return d.Name
}

// list is the class's devices as kubelet sees them.
func (s *pluginServer) list() []*pluginapi.Device {
	var out []*pluginapi.Device
	for _, d := range s.mgr.Devices() {
		if d.Class != s.class {
			continue
		}
		h := pluginapi.Healthy
		if d.Health != Healthy {
			h = pluginapi.Unhealthy
		}
		if s.replicas == 1 {
			out = append(out, &pluginapi.Device{ID: deviceID(d), Health: h})
			continue
		}
		for k := range s.replicas {
			out = append(out, &pluginapi.Device{ID: deviceID(d) + replicaSep + strconv.Itoa(k), Health: h})
		}
	}
	return out
}

// GetDevicePluginOptions implements the device-plugin API.
func (s *pluginServer) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{}, nil
}

// ListAndWatch sends the device list, then again on every change.
func (s *pluginServer) ListAndWatch(_ *pluginapi.Empty, stream grpc.ServerStreamingServer[pluginapi.ListAndWatchResponse]) error {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.updates[ch] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.updates, ch)
		s.mu.Unlock()
	}()
	for {
		if err := stream.Send(&pluginapi.ListAndWatchResponse{Devices: s.list()}); err != nil {
			return err
		}
		select {
		case _, ok := <-ch:
			if !ok {
				return nil
			}
		case <-stream.Context().Done():
			return nil
		}
	}
}

// Allocate maps device IDs to CDI device names.
func (s *pluginServer) Allocate(_ context.Context, req *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	known := map[string]Device{}
	for _, d := range s.mgr.Devices() {
		if d.Class == s.class {
			known[deviceID(d)] = d
		}
	}
	resp := &pluginapi.AllocateResponse{}
	for _, cr := range req.GetContainerRequests() {
		var names []string
		seen := map[string]bool{}
		for _, id := range cr.GetDevicesIds() {
			base, _, _ := strings.Cut(id, replicaSep)
			d, ok := known[base]
			if !ok {
				return nil, fmt.Errorf("%w: %s has no device %q", errdefs.ErrInvalidArgument, ResourceName(s.class), id)
			}
			if d.Health != Healthy {
				return nil, fmt.Errorf("%w: device %q of %s is unhealthy", errdefs.ErrFailedPrecondition, id, ResourceName(s.class))
			}
			n := Vendor + "/" + s.class + "=" + base
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
		car := &pluginapi.ContainerAllocateResponse{
			Annotations: map[string]string{"cdi.k8s.io/" + strings.ReplaceAll(Vendor, ".", "_") + "_" + s.class: strings.Join(names, ",")},
		}
		for _, n := range names {
			car.CdiDevices = append(car.CdiDevices, &pluginapi.CDIDevice{Name: n})
		}
		resp.ContainerResponses = append(resp.ContainerResponses, car)
	}
	return resp, nil
}

// PreStartContainer is not needed (PreStartRequired is false).
func (s *pluginServer) PreStartContainer(context.Context, *pluginapi.PreStartContainerRequest) (*pluginapi.PreStartContainerResponse, error) {
	return &pluginapi.PreStartContainerResponse{}, nil
}
