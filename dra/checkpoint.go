package dra

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/apimachinery/pkg/types"

	"github.com/accel-cri/accel-cri/internal/fsutil"
)

// checkpointVersion is the format of the checkpoint file; a file of
// another version is refused rather than misread.
const checkpointVersion = 1

// checkpointFile is the name of a driver's checkpoint in its plugin data
// directory (<kubelet_plugins_dir>/<driver>/checkpoint.json).
const checkpointFile = "checkpoint.json"

// checkpoint is what a driver has prepared, by claim UID: what
// NodeUnprepareResources must undo after accel-cri restarts (the kubelet
// sends only the claim's UID, namespace and name), and what the
// exclusive-use check compares new claims against.
type checkpoint struct {
	Version int                         `json:"version"`
	Driver  string                      `json:"driver"`
	Claims  map[types.UID]preparedClaim `json:"claims"`
}

// preparedClaim is one prepared ResourceClaim.
type preparedClaim struct {
	Namespace string           `json:"namespace"`
	Name      string           `json:"name"`
	Devices   []preparedDevice `json:"devices"`
}

// preparedDevice is one allocated device of a claim and the CDI device
// that gives it to containers.
type preparedDevice struct {
	Requests []string `json:"requests"`
	Pool     string   `json:"pool"`
	Device   string   `json:"device"`
	CDI      string   `json:"cdi"`
	// ShareID is set when the device is shared through consumable capacity.
	ShareID *types.UID `json:"shareID,omitempty"`
	// AdminAccess claims (monitoring) may use a device others hold.
	AdminAccess bool `json:"adminAccess,omitempty"`
}

// loadCheckpoint reads path; a missing file is an empty checkpoint.
func loadCheckpoint(path, driver string) (*checkpoint, error) {
	cp := &checkpoint{Version: checkpointVersion, Driver: driver, Claims: map[types.UID]preparedClaim{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return cp, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dra checkpoint: %w", err)
	}
	var got checkpoint
	if err := json.Unmarshal(b, &got); err != nil {
		return nil, fmt.Errorf("dra checkpoint %s: %w", path, err)
	}
	if got.Version != checkpointVersion || got.Driver != driver {
		return nil, fmt.Errorf("dra checkpoint %s: version %d of driver %q, want version %d of %q", path, got.Version, got.Driver, checkpointVersion, driver)
	}
	if got.Claims != nil {
		cp.Claims = got.Claims
	}
	return cp, nil
}

// save writes the checkpoint atomically (a crash leaves the old or the new
// file, never half of one).
func (cp *checkpoint) save(path string) error {
	b, err := json.MarshalIndent(cp, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("dra checkpoint: %w", err)
	}
	if err := fsutil.WriteFileAtomic(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("dra checkpoint: %w", err)
	}
	return nil
}
