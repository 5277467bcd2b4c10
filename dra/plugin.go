package dra

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/dynamic-resource-allocation/resourceslice"
	"k8s.io/klog/v2"

	"github.com/accel-cri/accel-cri/devices"
)

// Inventory is what the plugin needs of devices.Manager: the devices
// (present, then vanished ones Unhealthy) and a signal when they change.
type Inventory interface {
	Devices() []devices.Device
	Subscribe() (<-chan struct{}, func())
}

// PluginConfig says where the kubelet plugin lives.
type PluginConfig struct {
	// NodeName names the pools and the Node that owns the ResourceSlices.
	NodeName string
	// Client talks to the API server as an identity that may write the
	// node's ResourceSlices and read its claims (the kubelet's).
	Client kubernetes.Interface
	// PluginsDir is the kubelet's plugins directory: each driver's socket
	// and checkpoint go into PluginsDir/<driver>.
	PluginsDir string
	// RegistryDir is the kubelet's plugin registration directory.
	RegistryDir string
	// Shares is devices.replicas: classes whose devices may be shared.
	Shares map[string]int
	// SysfsRoot is where the PCI topology is read (WithSysfsRoot).
	SysfsRoot string
}

// Plugin is accel-cri's DRA kubelet plugin: one kubeletplugin helper per
// driver (its registration and dra.sock), ResourceSlices published from
// the inventory and republished when it changes, and the prepared claims
// of each driver in its checkpoint. It touches the API server (the node's
// ResourceSlices; claims are read by the helper), the kubelet's plugin
// directories and its checkpoints; containers get the prepared devices
// through the CDI registry at CreateContainer, not through this package.
type Plugin struct {
	cfg     PluginConfig
	inv     Inventory
	drivers []*driver
	stop    context.CancelFunc
	// done is closed when the publish loop ends; nil before it starts.
	done chan struct{}
	// prepared wakes the loop to write the status of newly prepared claims.
	prepared chan struct{}
}

// driver is one DRA driver: the DRAPlugin its helper calls.
type driver struct {
	name   string
	p      *Plugin
	state  *state
	status *claimStatus
	helper *kubeletplugin.Helper
	// health is closed and replaced when the devices change, to wake
	// WatchHealthStatus.
	healthMu sync.Mutex
	health   chan struct{}
}

var _ kubeletplugin.DRAPlugin = (*driver)(nil)

// StartPlugin starts the kubelet plugin of every driver in Drivers and
// publishes the node's devices in the background (it does not wait for
// the API server). The kubelet finds each driver through its registration
// socket whenever it (re)starts. Stop it with Stop; ctx only bounds the
// start.
func StartPlugin(ctx context.Context, cfg PluginConfig, inv Inventory) (*Plugin, error) {
	if cfg.NodeName == "" || cfg.Client == nil || cfg.PluginsDir == "" || cfg.RegistryDir == "" {
		return nil, errors.New("dra: the plugin needs a node name, a client and the kubelet's plugin directories")
	}
	if err := os.MkdirAll(cfg.RegistryDir, 0o750); err != nil {
		return nil, fmt.Errorf("dra: %w", err)
	}
	bg, cancel := context.WithCancel(klog.NewContext(context.Background(), klog.LoggerWithName(klog.FromContext(ctx), "dra")))
	p := &Plugin{cfg: cfg, inv: inv, stop: cancel, prepared: make(chan struct{}, 1)}
	for _, name := range Drivers {
		d, err := p.startDriver(bg, name)
		if err != nil {
			p.Stop()
			return nil, fmt.Errorf("dra: driver %s: %w", name, err)
		}
		p.drivers = append(p.drivers, d)
	}
	changed, unsubscribe := inv.Subscribe()
	p.done = make(chan struct{})
	go func() {
		defer close(p.done)
		defer unsubscribe()
		// The first publish waits for the API server (the ResourceSlice
		// controller syncs its informer first): in the background, so an
		// unreachable control plane never holds up the CRI, which a node
		// whose API server is a static pod needs to bring it up at all.
		p.publish(bg)
		for {
			select {
			case <-bg.Done():
				return
			case <-changed:
				p.publish(bg)
				for _, d := range p.drivers {
					d.wakeHealth()
				}
			case <-p.prepared:
				devs := inv.Devices()
				for _, d := range p.drivers {
					d.status.update(bg, d.state, devs)
				}
			}
		}
	}()
	return p, nil
}

func (p *Plugin) startDriver(ctx context.Context, name string) (*driver, error) {
	dataDir := filepath.Join(p.cfg.PluginsDir, name)
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return nil, err
	}
	st, err := newState(name, p.cfg.NodeName, dataDir, p.inv.Devices)
	if err != nil {
		return nil, err
	}
	d := &driver{name: name, p: p, state: st, status: newClaimStatus(name, p.cfg.Client), health: make(chan struct{})}
	h, err := kubeletplugin.Start(ctx, d,
		kubeletplugin.DriverName(name),
		kubeletplugin.KubeClient(p.cfg.Client),
		kubeletplugin.NodeName(p.cfg.NodeName),
		kubeletplugin.PluginDataDirectoryPath(dataDir),
		kubeletplugin.RegistrarDirectoryPath(p.cfg.RegistryDir),
	)
	if err != nil {
		return nil, err
	}
	d.helper = h
	klog.FromContext(ctx).Info("DRA driver started", "driver", name, "socket", filepath.Join(dataDir, "dra.sock"), "prepared claims", len(st.cp.Claims))
	return d, nil
}

// publish hands every driver's slices to its helper, whose controller
// makes the API server's ResourceSlices match (and retries on its own),
// then writes the device health of the claims prepared on changed devices.
func (p *Plugin) publish(ctx context.Context) {
	devs := p.inv.Devices()
	res, err := Resources(p.cfg.NodeName, devs, WithSysfsRoot(p.cfg.SysfsRoot), WithShares(p.cfg.Shares))
	if err != nil {
		klog.FromContext(ctx).Error(err, "Some devices are not published as DRA devices")
	}
	for _, d := range p.drivers {
		if err := d.helper.PublishResources(ctx, res[d.name]); err != nil {
			klog.FromContext(ctx).Error(err, "Publishing ResourceSlices", "driver", d.name)
		}
	}
	for _, d := range p.drivers {
		d.status.update(ctx, d.state, devs)
	}
}

// Stop unregisters the drivers, removes their sockets and stops publishing
// (the ResourceSlices stay: the kubelet deletes a node's slices when the
// node goes, and a restarted accel-cri takes them over).
func (p *Plugin) Stop() {
	p.stop()
	for _, d := range p.drivers {
		d.helper.Stop()
	}
	if p.done != nil {
		<-p.done
	}
}

func (d *driver) PrepareResourceClaims(ctx context.Context, claims []*resourceapi.ResourceClaim) (map[types.UID]kubeletplugin.PrepareResult, error) {
	res, err := d.state.prepare(ctx, claims)
	if err == nil {
		// The claims' device status is written after the kubelet has its
		// answer, not before: it must not slow the pod's start.
		select {
		case d.p.prepared <- struct{}{}:
		default:
		}
	}
	return res, err
}

func (d *driver) UnprepareResourceClaims(ctx context.Context, claims []kubeletplugin.NamespacedObject) (map[types.UID]error, error) {
	return d.state.unprepare(claims)
}

// HandleError logs what went wrong in the background. Every error the
// helper reports is recoverable (its controller retries); a
// DroppedFieldsError means the API server has a DRA feature off (device
// taints, consumable capacity, extendedResourceName on classes), and the
// devices are still published without those fields.
func (d *driver) HandleError(ctx context.Context, err error, msg string) {
	var dropped *resourceslice.DroppedFieldsError
	if errors.As(err, &dropped) {
		klog.FromContext(ctx).Error(err, "The API server dropped fields of accel-cri's ResourceSlices: a DRA feature gate is off there (DRADeviceTaints for unhealthy devices, DRAConsumableCapacity for shared devices)", "driver", d.name, "pool", dropped.PoolName)
		return
	}
	klog.FromContext(ctx).Error(err, msg, "driver", d.name)
}

// healthTimeout is how long the kubelet trusts a health report, and
// healthResend how often an unchanged report is sent again: within the
// helper's own 30 s staleness check (it also watches drivers whose report
// is empty), which the kubelet's protocol needs since it has no other
// sign of a live driver.
const (
	healthTimeout = 2 * time.Minute
	healthResend  = 20 * time.Second
)

// WatchHealthStatus reports every device of the driver, Healthy or
// Unhealthy (vanished), at once, when the inventory changes, and again
// every healthResend.
func (d *driver) WatchHealthStatus(ctx context.Context, reports chan<- kubeletplugin.DeviceHealthReport) error {
	t := time.NewTicker(healthResend)
	defer t.Stop()
	for {
		d.healthMu.Lock()
		wake := d.health
		d.healthMu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case reports <- d.healthReport():
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-t.C:
		}
	}
}

func (d *driver) wakeHealth() {
	d.healthMu.Lock()
	close(d.health)
	d.health = make(chan struct{})
	d.healthMu.Unlock()
}

func (d *driver) healthReport() kubeletplugin.DeviceHealthReport {
	now := time.Now()
	var r kubeletplugin.DeviceHealthReport
	for _, dev := range d.p.inv.Devices() {
		if Driver(dev.Class) != d.name {
			continue
		}
		h := kubeletplugin.DeviceHealth{
			PoolName: d.p.cfg.NodeName, DeviceName: DeviceName(dev),
			Health: kubeletplugin.HealthStatusHealthy, LastUpdated: now, HealthCheckTimeout: healthTimeout,
		}
		if dev.Health != devices.Healthy {
			h.Health = kubeletplugin.HealthStatusUnhealthy
			h.Message = fmt.Sprintf("%s vanished from node %s", StableCDIName(dev), d.p.cfg.NodeName)
		}
		r.Devices = append(r.Devices, h)
	}
	return r
}
