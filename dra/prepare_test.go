package dra

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/utils/ptr"

	"github.com/accel-cri/accel-cri/devices"
)

const testNode = "node-a"

var (
	gpuA = devices.Device{Class: devices.ClassIntelGPU, Name: "0", Aliases: []string{"0000:03:00.0"}, PCI: "0000:03:00.0", Health: devices.Healthy}
	gpuB = devices.Device{Class: devices.ClassIntelGPU, Name: "1", Aliases: []string{"0000:04:00.0"}, PCI: "0000:04:00.0", Health: devices.Healthy}
	// gone vanished from the node (devices.Manager keeps it, Unhealthy).
	gone  = devices.Device{Class: devices.ClassIntelGPU, Name: "2", Aliases: []string{"0000:05:00.0"}, PCI: "0000:05:00.0", Health: devices.Unhealthy}
	nvGPU = devices.Device{Class: devices.ClassNVIDIA, Name: "0", Aliases: []string{"GPU-8a5e0c3e-1f6b-4a44-9d58-0c7d1e2b3a4f", "0000:0a:00.0"}, PCI: "0000:0a:00.0", Health: devices.Healthy}
)

type result struct {
	driver, pool, device, request string
	share                         string // ShareID, "" for none
	admin                         bool
}

func claim(uid, name string, results ...result) *resourceapi.ResourceClaim {
	c := &resourceapi.ResourceClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID(uid)}}
	c.Status.Allocation = &resourceapi.AllocationResult{}
	for _, r := range results {
		ar := resourceapi.DeviceRequestAllocationResult{Driver: r.driver, Pool: r.pool, Device: r.device, Request: r.request}
		if r.share != "" {
			ar.ShareID = ptr.To(types.UID(r.share))
		}
		if r.admin {
			ar.AdminAccess = ptr.To(true)
		}
		c.Status.Allocation.Devices.Results = append(c.Status.Allocation.Devices.Results, ar)
	}
	return c
}

func gpu(d devices.Device, request string) result {
	return result{driver: DriverGPU, pool: testNode, device: DeviceName(d), request: request}
}

func newTestState(t *testing.T, dir string, devs ...devices.Device) *state {
	t.Helper()
	st, err := newState(DriverGPU, testNode, dir, func() []devices.Device { return devs })
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestPrepare(t *testing.T) {
	shared := func(r result, id string) result { r.share = id; return r }
	admin := func(r result) result { r.admin = true; return r }
	for _, tc := range []struct {
		desc string
		// held are claims prepared before (uid "held-N").
		held []*resourceapi.ResourceClaim
		// claim is prepared now (uid "new").
		claim   *resourceapi.ResourceClaim
		wantCDI []string
		wantErr string
	}{
		{desc: "one GPU, by its PCI address", claim: claim("new", "c", gpu(gpuA, "gpu")),
			wantCDI: []string{"accel-cri.io/intel-gpu=0000:03:00.0"}},
		{desc: "two GPUs in request order", claim: claim("new", "c", gpu(gpuB, "a"), gpu(gpuA, "b")),
			wantCDI: []string{"accel-cri.io/intel-gpu=0000:04:00.0", "accel-cri.io/intel-gpu=0000:03:00.0"}},
		{desc: "NVIDIA by UUID", claim: claim("new", "c", gpu(nvGPU, "gpu")),
			wantCDI: []string{"accel-cri.io/gpu=GPU-8a5e0c3e-1f6b-4a44-9d58-0c7d1e2b3a4f"}},
		{desc: "other drivers' results are not ours", claim: claim("new", "c", gpu(gpuA, "gpu"), result{driver: "gpu.example.com", pool: testNode, device: "x", request: "other"}),
			wantCDI: []string{"accel-cri.io/intel-gpu=0000:03:00.0"}},
		{desc: "the other GPU is free", held: []*resourceapi.ResourceClaim{claim("held-0", "h", gpu(gpuA, "gpu"))},
			claim: claim("new", "c", gpu(gpuB, "gpu")), wantCDI: []string{"accel-cri.io/intel-gpu=0000:04:00.0"}},
		{desc: "held exclusively", held: []*resourceapi.ResourceClaim{claim("held-0", "h", gpu(gpuA, "gpu"))},
			claim: claim("new", "c", gpu(gpuA, "gpu")), wantErr: "device gpu-0000-03-00-0 is held exclusively by claim ns/h (uid held-0)"},
		{desc: "a share beside an exclusive claim", held: []*resourceapi.ResourceClaim{claim("held-0", "h", gpu(gpuA, "gpu"))},
			claim: claim("new", "c", shared(gpu(gpuA, "gpu"), "s2")), wantErr: "held exclusively by claim ns/h"},
		{desc: "two shares", held: []*resourceapi.ResourceClaim{claim("held-0", "h", shared(gpu(gpuA, "gpu"), "s1"))},
			claim: claim("new", "c", shared(gpu(gpuA, "gpu"), "s2")), wantCDI: []string{"accel-cri.io/intel-gpu=0000:03:00.0"}},
		{desc: "admin access beside an exclusive claim", held: []*resourceapi.ResourceClaim{claim("held-0", "h", gpu(gpuA, "gpu"))},
			claim: claim("new", "c", admin(gpu(gpuA, "monitor"))), wantCDI: []string{"accel-cri.io/intel-gpu=0000:03:00.0"}},
		{desc: "exclusive beside an admin-access claim", held: []*resourceapi.ResourceClaim{claim("held-0", "h", admin(gpu(gpuA, "monitor")))},
			claim: claim("new", "c", gpu(gpuA, "gpu")), wantCDI: []string{"accel-cri.io/intel-gpu=0000:03:00.0"}},
		{desc: "vanished device", claim: claim("new", "c", gpu(gone, "gpu")),
			wantErr: "device gpu-0000-05-00-0 (intel-gpu/0000:05:00.0) vanished from node node-a"},
		{desc: "device not on the node", claim: claim("new", "c", result{driver: DriverGPU, pool: testNode, device: "gpu-0000-99-00-0", request: "gpu"}),
			wantErr: "device gpu-0000-99-00-0 is not on node node-a"},
		{desc: "another node's pool", claim: claim("new", "c", result{driver: DriverGPU, pool: "node-b", device: DeviceName(gpuA), request: "gpu"}),
			wantErr: `is in pool "node-b", not this node's (node-a)`},
		{desc: "not allocated", claim: &resourceapi.ResourceClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "c", UID: "new"}},
			wantErr: "claim ns/c: not allocated"},
		{desc: "half bad: nothing prepared", claim: claim("new", "c", gpu(gpuA, "a"), gpu(gone, "b")),
			wantErr: "vanished"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			dir := t.TempDir()
			st := newTestState(t, dir, gpuA, gpuB, gone, nvGPU)
			ctx := context.Background()
			if len(tc.held) > 0 {
				res, err := st.prepare(ctx, tc.held)
				if err != nil {
					t.Fatal(err)
				}
				for uid, r := range res {
					if r.Err != nil {
						t.Fatalf("held claim %s: %v", uid, r.Err)
					}
				}
			}
			res, err := st.prepare(ctx, []*resourceapi.ResourceClaim{tc.claim})
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != 1 {
				t.Fatalf("results %v: want one for the claim", res)
			}
			r := res["new"]
			reloaded := newTestState(t, dir, gpuA)
			_, recorded := reloaded.cp.Claims["new"]
			if tc.wantErr != "" {
				if r.Err == nil || !strings.Contains(r.Err.Error(), tc.wantErr) || !errors.Is(r.Err, ErrNotPrepared) {
					t.Fatalf("err %v, want ErrNotPrepared with %q", r.Err, tc.wantErr)
				}
				if recorded || len(r.Devices) > 0 {
					t.Fatalf("a refused claim was prepared: devices %v, in the checkpoint %v", r.Devices, recorded)
				}
				if len(reloaded.cp.Claims) != len(tc.held) {
					t.Fatalf("checkpoint has %d claims, want the %d held", len(reloaded.cp.Claims), len(tc.held))
				}
				return
			}
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			var got []string
			for _, d := range r.Devices {
				if d.PoolName != testNode || len(d.CDIDeviceIDs) != 1 || len(d.Requests) != 1 {
					t.Fatalf("device %+v", d)
				}
				got = append(got, d.CDIDeviceIDs[0])
			}
			if strings.Join(got, " ") != strings.Join(tc.wantCDI, " ") {
				t.Fatalf("CDI ids %v, want %v", got, tc.wantCDI)
			}
			if !recorded {
				t.Fatal("the prepared claim is not in the checkpoint on disk")
			}
		})
	}
}

func TestPrepareOpaqueConfig(t *testing.T) {
	st := newTestState(t, t.TempDir(), gpuA)
	c := claim("new", "c", gpu(gpuA, "gpu"))
	c.Status.Allocation.Devices.Config = []resourceapi.DeviceAllocationConfiguration{{
		Source: resourceapi.AllocationConfigSourceClaim, Requests: []string{"gpu"},
		DeviceConfiguration: resourceapi.DeviceConfiguration{Opaque: &resourceapi.OpaqueDeviceConfiguration{
			Driver: DriverGPU, Parameters: runtime.RawExtension{Raw: []byte(`{"sharing":`)},
		}},
	}}
	res, err := st.prepare(context.Background(), []*resourceapi.ResourceClaim{c})
	if err != nil {
		t.Fatal(err)
	}
	if err := res["new"].Err; !errors.Is(err, ErrOpaqueConfig) || !strings.Contains(err.Error(), "requests gpu") {
		t.Fatalf("err %v, want ErrOpaqueConfig naming the request", err)
	}
	// Another driver's parameters are that driver's business.
	c.Status.Allocation.Devices.Config[0].Opaque.Driver = "gpu.example.com"
	res, err = st.prepare(context.Background(), []*resourceapi.ResourceClaim{c})
	if err != nil || res["new"].Err != nil {
		t.Fatalf("another driver's config refused: %v %v", err, res["new"].Err)
	}
}

// TestPrepareRestart: a restarted accel-cri (a new state over the same
// directory) answers a repeated prepare with the same devices, still
// refuses the device to another claim, and unprepares what the old
// process prepared.
func TestPrepareRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	st := newTestState(t, dir, gpuA, gpuB)
	first := claim("uid-1", "first", gpu(gpuA, "gpu"))
	res, err := st.prepare(ctx, []*resourceapi.ResourceClaim{first})
	if err != nil || res["uid-1"].Err != nil {
		t.Fatal(err, res["uid-1"].Err)
	}

	st = newTestState(t, dir, gpuA, gpuB)
	// Idempotent even if the device vanished since: the kubelet asks
	// again after its own restart and must get what it got before.
	st.devs = func() []devices.Device { g := gpuA; g.Health = devices.Unhealthy; return []devices.Device{g, gpuB} }
	again, err := st.prepare(ctx, []*resourceapi.ResourceClaim{first})
	if err != nil || again["uid-1"].Err != nil {
		t.Fatal(err, again["uid-1"].Err)
	}
	if got, want := again["uid-1"].Devices, res["uid-1"].Devices; len(got) != 1 || got[0].CDIDeviceIDs[0] != want[0].CDIDeviceIDs[0] {
		t.Fatalf("after restart %v, before %v", got, want)
	}
	st.devs = func() []devices.Device { return []devices.Device{gpuA, gpuB} }
	other, err := st.prepare(ctx, []*resourceapi.ResourceClaim{claim("uid-2", "second", gpu(gpuA, "gpu"))})
	if err != nil || !errors.Is(other["uid-2"].Err, ErrNotPrepared) {
		t.Fatalf("second claim on the held device: %v %v", err, other["uid-2"].Err)
	}

	un, err := st.unprepare([]kubeletplugin.NamespacedObject{
		{UID: "uid-1", NamespacedName: types.NamespacedName{Namespace: "ns", Name: "first"}},
		{UID: "never-prepared"},
	})
	if err != nil || len(un) != 2 || un["uid-1"] != nil || un["never-prepared"] != nil {
		t.Fatalf("unprepare: %v %v", un, err)
	}
	if st = newTestState(t, dir, gpuA); len(st.cp.Claims) != 0 {
		t.Fatalf("checkpoint after unprepare: %v", st.cp.Claims)
	}
	// Unprepare again: still fine (the kubelet retries).
	if un, err := st.unprepare([]kubeletplugin.NamespacedObject{{UID: "uid-1"}}); err != nil || un["uid-1"] != nil {
		t.Fatalf("second unprepare: %v %v", un, err)
	}
}

// TestPrepareCheckpointUnwritable: when the checkpoint cannot be written
// the call fails and nothing is prepared, in memory or on disk.
func TestPrepareCheckpointUnwritable(t *testing.T) {
	dir := t.TempDir()
	st := newTestState(t, dir, gpuA)
	// A directory where the file should be: the rename fails.
	if err := os.Mkdir(filepath.Join(dir, checkpointFile), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := st.prepare(context.Background(), []*resourceapi.ResourceClaim{claim("uid-1", "c", gpu(gpuA, "gpu"))}); err == nil {
		t.Fatal("prepare succeeded without a checkpoint")
	}
	if len(st.cp.Claims) != 0 {
		t.Fatalf("claims kept in memory: %v", st.cp.Claims)
	}
}

func TestLoadCheckpoint(t *testing.T) {
	for _, tc := range []struct{ desc, content, wantErr string }{
		{"missing", "", ""},
		{"garbage", "{", "unexpected end of JSON"},
		{"other version", `{"version": 7, "driver": "gpu.accel-cri.io"}`, "version 7"},
		{"other driver", `{"version": 1, "driver": "fpga.accel-cri.io"}`, `"fpga.accel-cri.io"`},
		{"empty claims", `{"version": 1, "driver": "gpu.accel-cri.io"}`, ""},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), checkpointFile)
			if tc.content != "" {
				os.WriteFile(p, []byte(tc.content), 0o600)
			}
			cp, err := loadCheckpoint(p, DriverGPU)
			if tc.wantErr == "" {
				if err != nil || cp.Claims == nil {
					t.Fatalf("%v %v", cp, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
		})
	}
}
