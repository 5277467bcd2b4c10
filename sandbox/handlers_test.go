package sandbox

import (
	"maps"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/errdefs"

	"github.com/accel-cri/accel-cri/sandbox/spec"
)

func TestNewHandler(t *testing.T) {
	state := t.TempDir()
	tests := []struct {
		desc            string
		cfg             HandlerConfig
		wantType        string
		wantSnapshotter string
		check           func(*testing.T, *handler)
	}{
		{desc: "runc default: state under the handler's own root, the binary the features were probed of", cfg: HandlerConfig{}, wantType: RuntimeTypeRunc, wantSnapshotter: "overlayfs",
			check: func(t *testing.T, h *handler) {
				o, ok := h.options.(*options.Options)
				if !ok || o.Root != filepath.Join(state, "runtimes", "h") || o.BinaryName != "runc" || !o.SystemdCgroup || h.binary != "runc" {
					t.Errorf("options %+v binary %q", h.options, h.binary)
				}
			}},
		{desc: "crun: runc shim with another binary and root", cfg: HandlerConfig{Type: RuntimeTypeRunc, BinaryName: "crun", Root: filepath.Join(state, "crun"), Snapshotter: "native"},
			wantType: RuntimeTypeRunc, wantSnapshotter: "native",
			check: func(t *testing.T, h *handler) {
				o := h.options.(*options.Options)
				if o.BinaryName != "crun" || o.Root != filepath.Join(state, "crun") {
					t.Errorf("options %+v", o)
				}
			}},
		{desc: "runsc shim with a config file", cfg: HandlerConfig{Type: RuntimeTypeRunsc, ConfigPath: "/etc/containerd/runsc.toml"}, wantType: RuntimeTypeRunsc, wantSnapshotter: "overlayfs",
			check: func(t *testing.T, h *handler) {
				o, ok := h.options.(*runtimeoptions.Options)
				if !ok || o.TypeUrl != runscOptionsType || o.ConfigPath != "/etc/containerd/runsc.toml" {
					t.Errorf("options %+v", h.options)
				}
				if h.features != (HandlerFeatures{}) {
					t.Errorf("features %+v, want none for a shim that is not runc", h.features)
				}
			}},
		{desc: "kata with a config file", cfg: HandlerConfig{Type: RuntimeTypeKata, ConfigPath: "/etc/kata/configuration.toml"}, wantType: RuntimeTypeKata, wantSnapshotter: "overlayfs",
			check: func(t *testing.T, h *handler) {
				o, ok := h.options.(*runtimeoptions.Options)
				if !ok || o.TypeUrl != "" || o.ConfigPath != "/etc/kata/configuration.toml" {
					t.Errorf("options %+v", h.options)
				}
			}},
		{desc: "kata without options", cfg: HandlerConfig{Type: RuntimeTypeKata}, wantType: RuntimeTypeKata, wantSnapshotter: "overlayfs",
			check: func(t *testing.T, h *handler) {
				if h.options != nil {
					t.Errorf("options %+v, want none", h.options)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			h, err := newHandler("h", tc.cfg, state, "overlayfs", true)
			if err != nil {
				t.Fatal(err)
			}
			if h.runtimeType != tc.wantType || h.snapshotter != tc.wantSnapshotter {
				t.Errorf("type %q snapshotter %q", h.runtimeType, h.snapshotter)
			}
			tc.check(t, h)
		})
	}
	if _, err := newHandler("x", HandlerConfig{Type: "kata"}, state, "overlayfs", false); err == nil {
		t.Error("a type that is not io.containerd.* was accepted")
	}
}

// TestHandlerMountOptions: which handlers apply CRI mount_options, with the
// OCI runtimes installed on the test machine (runc 1.5, crun 1.8, runsc)
// and a runtime whose `features` leaves the flags out.
func TestHandlerMountOptions(t *testing.T) {
	state := t.TempDir()
	noFlags := filepath.Join(state, "noflags-runtime")
	if err := os.WriteFile(noFlags, []byte("#!/bin/sh\necho '{\"mountOptions\":[\"ro\",\"rro\"]}'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		desc string
		cfg  HandlerConfig
		want bool
	}{
		{desc: "runc: features lists nodev, noexec, nosuid", cfg: HandlerConfig{BinaryName: "runc"}, want: true},
		{desc: "crun 1.8: no features command, the OCI spec's MUST options", cfg: HandlerConfig{BinaryName: "crun"}, want: true},
		{desc: "runsc as the runc shim's binary: gVisor ignores nodev and nosuid", cfg: HandlerConfig{BinaryName: "runsc"}},
		{desc: "runc-style runtime whose features lack the flags", cfg: HandlerConfig{BinaryName: noFlags}},
		{desc: "gVisor's shim", cfg: HandlerConfig{Type: RuntimeTypeRunsc}},
		{desc: "Kata", cfg: HandlerConfig{Type: RuntimeTypeKata}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			h, err := newHandler("h", tc.cfg, state, "overlayfs", false)
			if err != nil {
				t.Fatal(err)
			}
			if h.features.MountOptions != tc.want {
				t.Errorf("MountOptions = %v, want %v (features %+v)", h.features.MountOptions, tc.want, h.features)
			}
		})
	}
}

func TestHandlerOf(t *testing.T) {
	r := &Runtime{defaultHandler: "runc", handlers: map[string]*handler{
		"runc": {name: "runc", runtimeType: RuntimeTypeRunc, snapshotter: "overlayfs", features: HandlerFeatures{RecursiveReadOnlyMounts: true}},
		"kata": {name: "kata", runtimeType: RuntimeTypeKata, snapshotter: "devmapper"},
	}}
	if h, err := r.handlerOf(""); err != nil || h.name != "runc" {
		t.Errorf(`"" = %v, %v; want the default handler`, h, err)
	}
	if _, err := r.handlerOf("gvisor"); !errdefs.IsNotFound(err) {
		t.Errorf("unknown handler: %v, want NotFound", err)
	}
	if sn, err := r.HandlerSnapshotter("kata"); err != nil || sn != "devmapper" {
		t.Errorf("snapshotter %q, %v", sn, err)
	}
	got := r.Handlers()
	if len(got) != 3 || got[0].Name != "" || !got[0].Features.RecursiveReadOnlyMounts || got[1].Name != "kata" || got[2].Name != "runc" || got[1].Type != RuntimeTypeKata {
		t.Errorf("handlers %+v", got)
	}
}

// TestHandlerAnnotations: the pod and container annotations a handler lets
// into the OCI spec (sandbox/spec sets the CRI ones over them).
func TestHandlerAnnotations(t *testing.T) {
	kata := &handler{runtimeType: RuntimeTypeKata, podAnnotations: []string{"io.katacontainers.*", "exact"}, containerAnnotations: []string{"ctr.example/*", "io.katacontainers.*"}}
	pod := map[string]string{
		"io.katacontainers.config.hypervisor.default_memory": "512", "exact": "1", "exactly": "no", "other": "no",
		spec.AnnotationSandboxID: "spoofed",
	}
	ctr := map[string]string{"ctr.example/x": "c", "io.katacontainers.config.hypervisor.default_memory": "1024", "other": "no"}
	tests := []struct {
		desc    string
		h       *handler
		sandbox bool // pause container (else app container)
		want    map[string]string
	}{
		{desc: "runc passes no pod annotations", h: &handler{runtimeType: RuntimeTypeRunc}, sandbox: true, want: map[string]string{}},
		{desc: "runc passes no container annotations", h: &handler{runtimeType: RuntimeTypeRunc}, want: map[string]string{}},
		{desc: "kata pause: allowed pod annotations", h: kata, sandbox: true,
			want: map[string]string{"exact": "1", "io.katacontainers.config.hypervisor.default_memory": "512"}},
		{desc: "kata container: pod and container annotations, the container's win", h: kata,
			want: map[string]string{"exact": "1", "ctr.example/x": "c", "io.katacontainers.config.hypervisor.default_memory": "1024"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got := containerPassedAnnotations(tc.h, pod, ctr)
			if tc.sandbox {
				got = passAnnotations(pod, tc.h.podAnnotations)
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("passed %v, want %v", got, tc.want)
			}
		})
	}
}

func TestOlderSpecVersion(t *testing.T) {
	for _, tc := range []struct{ declared, ours, want string }{
		{"1.0.0", "1.2.1", "1.0.0"},         // crun 1.8: checks ociVersion
		{"1.0.2-dev", "1.2.1", "1.0.2-dev"}, // runc 1.1, runsc 2022
		{"1.2.0", "1.2.1", ""},
		{"1.3.0", "1.2.1", ""},
		{"", "1.2.1", ""},
		{"2.0", "1.2.1", ""},
	} {
		if got := olderSpecVersion(tc.declared, tc.ours); got != tc.want {
			t.Errorf("olderSpecVersion(%q, %q) = %q, want %q", tc.declared, tc.ours, got, tc.want)
		}
	}
}
