package dra

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	resourceac "k8s.io/client-go/applyconfigurations/resource/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/accel-cri/accel-cri/devices"
)

// The condition accel-cri keeps in each prepared claim's status.devices
// entry: whether the device is still on the node, and if not, why.
const (
	ConditionHealthy     = "Healthy"
	ReasonDevicePresent  = "DevicePresent"
	ReasonDeviceVanished = "DeviceVanished"
)

// claimStatus writes the health of prepared claims' devices into the
// claims' status.devices (server-side apply, one field manager per
// driver, so other drivers' entries stay untouched): right after a claim
// is prepared, and when a device's health differs from what it last
// wrote; after a restart it writes every claim once.
type claimStatus struct {
	driver string
	client kubernetes.Interface

	mu      sync.Mutex
	written map[types.UID]string // claim → the conditions last applied ("" none)
}

func newClaimStatus(driver string, client kubernetes.Interface) *claimStatus {
	return &claimStatus{driver: driver, client: client, written: map[types.UID]string{}}
}

// update applies the health of every prepared claim's devices that
// changed. Errors are logged (a cluster without the RBAC of
// deploy/dra/rbac.yaml refuses the writes; the taint and the kubelet's
// health still tell).
func (cs *claimStatus) update(ctx context.Context, st *state, devs []devices.Device) {
	byName := map[string]devices.Device{}
	for _, d := range devs {
		if Driver(d.Class) == cs.driver {
			byName[DeviceName(d)] = d
		}
	}
	st.mu.Lock()
	claims := make(map[types.UID]preparedClaim, len(st.cp.Claims))
	for uid, c := range st.cp.Claims {
		claims[uid] = c
	}
	st.mu.Unlock()

	cs.mu.Lock()
	defer cs.mu.Unlock()
	for uid := range cs.written {
		if _, ok := claims[uid]; !ok {
			delete(cs.written, uid)
		}
	}
	uids := make([]types.UID, 0, len(claims))
	for uid := range claims {
		uids = append(uids, uid)
	}
	slices.Sort(uids)
	now := metav1.Now()
	for _, uid := range uids {
		c := claims[uid]
		status := resourceac.ResourceClaimStatus()
		var summary string
		for _, pd := range c.Devices {
			reason, msg, healthy := ReasonDevicePresent, fmt.Sprintf("%s is on node %s", pd.Device, pd.Pool), metav1.ConditionTrue
			if d, ok := byName[pd.Device]; !ok || d.Health != devices.Healthy {
				reason, healthy = ReasonDeviceVanished, metav1.ConditionFalse
				msg = fmt.Sprintf("%s vanished from node %s: containers of this claim that start now fail; the device is tainted %s", pd.CDI, pd.Pool, TaintUnhealthy)
			}
			summary += pd.Device + "=" + reason + ";"
			entry := resourceac.AllocatedDeviceStatus().WithDriver(cs.driver).WithPool(pd.Pool).WithDevice(pd.Device).
				WithConditions(metav1ac.Condition().WithType(ConditionHealthy).WithStatus(healthy).
					WithReason(reason).WithMessage(msg).WithLastTransitionTime(now))
			if pd.ShareID != nil {
				entry.WithShareID(string(*pd.ShareID))
			}
			status.WithDevices(entry)
		}
		if cs.written[uid] == summary {
			continue
		}
		ac := resourceac.ResourceClaim(c.Name, c.Namespace).WithUID(uid).WithStatus(status)
		applyCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
		_, err := cs.client.ResourceV1().ResourceClaims(c.Namespace).ApplyStatus(applyCtx, ac, metav1.ApplyOptions{FieldManager: cs.driver, Force: true})
		cancel()
		if err != nil {
			klog.FromContext(ctx).Error(err, "Writing the claim's device status", "driver", cs.driver, "claim", klog.KRef(c.Namespace, c.Name))
			continue
		}
		cs.written[uid] = summary
	}
}
