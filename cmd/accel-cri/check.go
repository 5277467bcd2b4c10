package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"time"

	"github.com/accel-cri/accel-cri/devices"
	"github.com/accel-cri/accel-cri/preflight"
)

// errCheckFailed makes `accel-cri check` exit non-zero.
var errCheckFailed = errors.New("check: required items failed (see the FAIL lines)")

// runCheck is `accel-cri check [flags]`: the preflight over the config
// serve would use (the same --config and flags).
func runCheck(args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	if err != nil {
		preflight.Print(stdout, []preflight.Result{{
			Status: preflight.Fail, Item: "config", Detail: err.Error(),
			Fix: "correct the config file or flags (accel-cri config default shows every key)",
		}})
		return errCheckFailed
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	discover := func() (devices.Inventory, error) {
		return devices.New(append(deviceOptions(cfg.Devices), devices.WithCDIDir(""))...).Discover()
	}
	results := append([]preflight.Result{{Status: preflight.OK, Item: "config", Detail: "valid"}},
		preflight.Run(ctx, cfg, preflight.WithDiscover(discover))...)
	if preflight.Print(stdout, results) {
		return errCheckFailed
	}
	return nil
}
