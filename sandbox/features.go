package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go/features"

	"github.com/accel-cri/accel-cri/sandbox/spec"
)

// HandlerFeatures are what a runtime handler can do, as kubelet asks.
type HandlerFeatures struct {
	// RecursiveReadOnlyMounts: the OCI runtime knows the "rro" mount option.
	RecursiveReadOnlyMounts bool
	// UserNamespaces: the OCI runtime can do idmapped mounts, which pods
	// with their own user namespace need.
	UserNamespaces bool
	// MountOptions: the handler applies a CRI mount's mount_options
	// (nodev, noexec, nosuid) to its bind mount. See newHandler for which
	// handlers do.
	MountOptions bool
}

// probeFeatures asks the OCI runtime binary (`runc features`) once at start.
// A runtime that does not answer gets no optional features.
func probeFeatures(binary string) (HandlerFeatures, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "features").Output()
	if err != nil {
		return HandlerFeatures{}, fmt.Errorf("%s features: %w", binary, err)
	}
	return parseFeatures(out)
}

func parseFeatures(b []byte) (HandlerFeatures, error) {
	var f features.Features
	if err := json.Unmarshal(b, &f); err != nil {
		return HandlerFeatures{}, fmt.Errorf("parse runtime features: %w", err)
	}
	hf := HandlerFeatures{RecursiveReadOnlyMounts: slices.Contains(f.MountOptions, "rro"), MountOptions: true}
	for _, o := range spec.BindMountOptions() {
		hf.MountOptions = hf.MountOptions && slices.Contains(f.MountOptions, o)
	}
	if l := f.Linux; l != nil && l.MountExtensions != nil && l.MountExtensions.IDMap != nil && l.MountExtensions.IDMap.Enabled != nil {
		hf.UserNamespaces = *l.MountExtensions.IDMap.Enabled
	}
	return hf, nil
}

// Features reports what the default runtime handler can do.
func (r *Runtime) Features() HandlerFeatures { return r.handlers[r.defaultHandler].features }
