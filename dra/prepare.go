package dra

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/klog/v2"

	"github.com/accel-cri/accel-cri/devices"
)

// Errors a claim's preparation fails with (in the claim's result, which the
// kubelet shows in the pod's events and retries).
var (
	// ErrNotPrepared: the claim cannot be prepared on this node as
	// allocated (a device that is not here, or another claim holds it).
	ErrNotPrepared = errors.New("cannot prepare")
	// ErrOpaqueConfig: the claim carries opaque parameters for the driver;
	// accel-cri's drivers take none.
	ErrOpaqueConfig = errors.New("opaque device configuration")
)

// state is one driver's prepared claims: the checkpoint in memory and on
// disk, changed only under mu (the kubelet plugin helper also serializes
// its calls; mu guards against the health and publish paths reading it).
type state struct {
	driver string
	node   string
	path   string
	devs   func() []devices.Device

	mu sync.Mutex
	cp *checkpoint
}

func newState(driver, node, dataDir string, devs func() []devices.Device) (*state, error) {
	path := filepath.Join(dataDir, checkpointFile)
	cp, err := loadCheckpoint(path, driver)
	if err != nil {
		return nil, err
	}
	return &state{driver: driver, node: node, path: path, devs: devs, cp: cp}, nil
}

// prepare implements kubeletplugin.DRAPlugin.PrepareResourceClaims: each
// claim's devices of this driver become their stable CDI device
// (accel-cri.io/<class>=<PCI address or UUID>, which accel-cri's in-memory
// registry resolves from the live inventory at CreateContainer). A claim
// is prepared whole or not at all, and is recorded in the checkpoint
// before the kubelet hears of it; preparing it again returns the same
// devices (the kubelet retries after restarts).
func (s *state) prepare(ctx context.Context, claims []*resourceapi.ResourceClaim) (map[types.UID]kubeletplugin.PrepareResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	byName := map[string]devices.Device{}
	for _, d := range s.devs() {
		if Driver(d.Class) == s.driver {
			byName[DeviceName(d)] = d
		}
	}
	out := map[types.UID]kubeletplugin.PrepareResult{}
	var added []types.UID
	for _, claim := range claims {
		if done, ok := s.cp.Claims[claim.UID]; ok {
			out[claim.UID] = kubeletplugin.PrepareResult{Devices: resultDevices(done.Devices)}
			continue
		}
		prepared, err := s.prepareClaim(claim, byName)
		if err != nil {
			klog.FromContext(ctx).Info("Claim not prepared", "driver", s.driver, "claim", klog.KObj(claim), "err", err)
			out[claim.UID] = kubeletplugin.PrepareResult{Err: err}
			continue
		}
		s.cp.Claims[claim.UID] = prepared
		added = append(added, claim.UID)
		out[claim.UID] = kubeletplugin.PrepareResult{Devices: resultDevices(prepared.Devices)}
	}
	if len(added) > 0 {
		if err := s.cp.save(s.path); err != nil {
			// Nothing is prepared that is not on disk: forget this call's
			// claims, so that the kubelet's retry starts from the same state.
			for _, uid := range added {
				delete(s.cp.Claims, uid)
			}
			return nil, err
		}
	}
	return out, nil
}

// prepareClaim checks one claim's allocation against the node's devices and
// the claims already prepared, and returns what to record.
func (s *state) prepareClaim(claim *resourceapi.ResourceClaim, byName map[string]devices.Device) (preparedClaim, error) {
	pc := preparedClaim{Namespace: claim.Namespace, Name: claim.Name}
	alloc := claim.Status.Allocation
	if alloc == nil {
		return pc, fmt.Errorf("%w claim %s/%s: not allocated", ErrNotPrepared, claim.Namespace, claim.Name)
	}
	for _, c := range alloc.Devices.Config {
		if c.Opaque != nil && c.Opaque.Driver == s.driver {
			return pc, fmt.Errorf("%w for %s in claim %s/%s (requests %s): %s takes no parameters; select devices with a DeviceClass or CEL selector instead",
				ErrOpaqueConfig, s.driver, claim.Namespace, claim.Name, requestList(c.Requests), s.driver)
		}
	}
	for _, r := range alloc.Devices.Results {
		if r.Driver != s.driver {
			continue
		}
		if r.Pool != s.node {
			return pc, fmt.Errorf("%w claim %s/%s: device %s is in pool %q, not this node's (%s)", ErrNotPrepared, claim.Namespace, claim.Name, r.Device, r.Pool, s.node)
		}
		d, ok := byName[r.Device]
		if !ok {
			return pc, fmt.Errorf("%w claim %s/%s: device %s is not on node %s", ErrNotPrepared, claim.Namespace, claim.Name, r.Device, s.node)
		}
		if d.Health != devices.Healthy {
			return pc, fmt.Errorf("%w claim %s/%s: device %s (%s) vanished from node %s", ErrNotPrepared, claim.Namespace, claim.Name, r.Device, d.ID(), s.node)
		}
		pd := preparedDevice{
			Requests:    []string{r.Request},
			Pool:        r.Pool,
			Device:      r.Device,
			CDI:         StableCDIName(d),
			ShareID:     r.ShareID,
			AdminAccess: r.AdminAccess != nil && *r.AdminAccess,
		}
		if other, uid := s.holder(pd, claim.UID); other != nil {
			return pc, fmt.Errorf("%w claim %s/%s: device %s is held exclusively by claim %s/%s (uid %s)", ErrNotPrepared, claim.Namespace, claim.Name, r.Device, other.Namespace, other.Name, uid)
		}
		pc.Devices = append(pc.Devices, pd)
	}
	return pc, nil
}

// holder is a prepared claim (other than uid) that pd may not be used
// beside: sharing needs both allocations to be shares of the device
// (consumable capacity); an admin-access claim (monitoring) may use any
// device and does not hold one.
func (s *state) holder(pd preparedDevice, uid types.UID) (*preparedClaim, types.UID) {
	if pd.AdminAccess {
		return nil, ""
	}
	for other, c := range s.cp.Claims {
		if other == uid {
			continue
		}
		for _, od := range c.Devices {
			if od.Pool != pd.Pool || od.Device != pd.Device || od.AdminAccess {
				continue
			}
			if pd.ShareID == nil || od.ShareID == nil {
				return &c, other
			}
		}
	}
	return nil, ""
}

// unprepare implements UnprepareResourceClaims: the claims leave the
// checkpoint. A claim that is not prepared is not an error (the kubelet
// retries; the DRAPlugin contract asks for idempotence).
func (s *state) unprepare(claims []kubeletplugin.NamespacedObject) (map[types.UID]error, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[types.UID]error{}
	removed := map[types.UID]preparedClaim{}
	for _, c := range claims {
		out[c.UID] = nil
		if pc, ok := s.cp.Claims[c.UID]; ok {
			removed[c.UID] = pc
			delete(s.cp.Claims, c.UID)
		}
	}
	if len(removed) == 0 {
		return out, nil
	}
	if err := s.cp.save(s.path); err != nil {
		for uid, pc := range removed {
			s.cp.Claims[uid] = pc
		}
		return nil, err
	}
	return out, nil
}

// prepared returns the device names of this driver that prepared claims
// use, with the claims using each (for health messages and tests).
func (s *state) prepared() map[string][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]string{}
	for _, c := range s.cp.Claims {
		for _, d := range c.Devices {
			out[d.Device] = append(out[d.Device], c.Namespace+"/"+c.Name)
		}
	}
	for _, v := range out {
		slices.Sort(v)
	}
	return out
}

func resultDevices(pds []preparedDevice) []kubeletplugin.Device {
	out := make([]kubeletplugin.Device, 0, len(pds))
	for _, d := range pds {
		out = append(out, kubeletplugin.Device{
			Requests:     d.Requests,
			PoolName:     d.Pool,
			DeviceName:   d.Device,
			CDIDeviceIDs: []string{d.CDI},
			ShareID:      d.ShareID,
		})
	}
	return out
}

// StableCDIName is the CDI device a prepared claim gets for d: its class
// and first alias (PCI address, NVIDIA UUID, FPGA port), which stay the
// same while indexes may change as devices come and go; the name for
// devices without an alias (static devices).
func StableCDIName(d devices.Device) string {
	name := d.Name
	if len(d.Aliases) > 0 {
		name = d.Aliases[0]
	}
	return devices.Vendor + "/" + d.Class + "=" + name
}

func requestList(r []string) string {
	if len(r) == 0 {
		return "all"
	}
	return strings.Join(r, ",")
}
