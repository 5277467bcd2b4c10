package config

import "errors"

// DefaultCRIUPath is where hack/build-criu.sh installs CRIU.
const DefaultCRIUPath = "/usr/local/sbin/criu"

// CheckpointConfig is the [checkpoint] table: checkpoint and restore of
// containers with CRIU (docs/checkpoint.md).
type CheckpointConfig struct {
	CRIUPath string `toml:"criu_path" json:"criu_path" comment:"CRIU binary for checkpoints and restores: a path, or a name looked up in PATH. CRIU 4.1 or newer:\nDebian bookworm's criu 3.17 fails on kernels from 6.13 on; hack/build-criu.sh builds 4.1.1 and\ninstalls it here. accel-cri check reports its version and \"criu check\"."`
}

// DefaultCheckpoint is the default [checkpoint] table.
func DefaultCheckpoint() CheckpointConfig {
	return CheckpointConfig{CRIUPath: DefaultCRIUPath}
}

func (c *Config) validateCheckpoint() []error {
	var errs []error
	if c.Checkpoint.CRIUPath == "" {
		errs = append(errs, errors.New("checkpoint.criu_path: must be set (a path or a name in PATH)"))
	}
	return errs
}
