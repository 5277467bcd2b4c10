package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/accel-cri/accel-cri/config"
	"github.com/accel-cri/accel-cri/devices"
	"github.com/accel-cri/accel-cri/sandbox"
	"k8s.io/klog/v2"
)

// deviceOptions turns the [devices] table into discovery options.
func deviceOptions(c config.DevicesConfig) []devices.Option {
	opts := []devices.Option{
		devices.WithSysfsRoot(c.SysfsRoot),
		devices.WithDevRoot(c.DevRoot),
		devices.WithNVMLLibrary(c.NVMLLibrary),
		devices.WithNVIDIACapabilities(c.NVIDIADriverCapabilities...),
		devices.WithCDIDir(c.CDIOutputDir),
	}
	for _, s := range c.Static {
		opts = append(opts, devices.WithStatic(devices.StaticDevice{Name: s.Name, Path: s.Path}))
	}
	return opts
}

// runDevices is `accel-cri devices`: discover with the configured roots
// and print what was found, without writing specs.
func runDevices(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("accel-cri devices", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", config.DefaultPath, "TOML config file")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == "config" })
	cfg, err := config.Load(*cfgPath, !set)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	opts := append(deviceOptions(cfg.Devices), devices.WithCDIDir(""))
	inv, derr := devices.New(opts...).Discover()
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(inv); err != nil {
			return err
		}
		return derr
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CDI NAME\tALSO\tVENDOR\tMODEL\tDRIVER\tNODES\tHEALTH")
	for _, d := range inv.Devices {
		var nodes []string
		for _, n := range d.Nodes {
			nodes = append(nodes, n.HostPath)
		}
		var also []string
		for _, a := range d.Aliases {
			also = append(also, devices.Vendor+"/"+d.Class+"="+a)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.CDIName(), dash(strings.Join(also, ",")), dash(d.Vendor), dash(d.Model), dash(d.Driver), strings.Join(nodes, ","), d.Health)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(inv.Devices) == 0 {
		fmt.Fprintln(stdout, "(no devices found)")
	}
	if inv.NVIDIA != nil {
		fmt.Fprintf(stdout, "NVIDIA driver %s: %d control nodes, %d libraries\n", inv.NVIDIA.DriverVersion, len(inv.NVIDIA.ControlNodes), len(inv.NVIDIA.Libraries))
	}
	if derr != nil {
		return errors.Join(errors.New("some devices could not be read"), derr)
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// startDevices discovers and publishes devices (when cdi_output_dir is
// set), follows changes until ctx ends, and returns the runtime option
// that resolves CDI devices for containers (none when CDI is off; the
// discovered devices' names from the Manager itself) and sets device
// ownership. count, when set, wraps the CDI injector (metrics).
func startDevices(ctx context.Context, c config.DevicesConfig, count func(sandbox.CDIInjector) sandbox.CDIInjector) (*devices.Manager, sandbox.Option, error) {
	var mgr *devices.Manager
	if c.CDIOutputDir != "" {
		mgr = devices.New(deviceOptions(c)...)
		if err := mgr.Refresh(); err != nil {
			klog.ErrorS(err, "Device discovery (found devices are still published)")
		}
		for _, d := range mgr.Devices() {
			klog.InfoS("Device", "cdi", d.CDIName(), "aliases", d.Aliases, "driver", d.Driver, "nodes", len(d.Nodes))
		}
		go func() {
			if err := mgr.Watch(ctx); err != nil {
				klog.ErrorS(err, "Device watch stopped")
			}
		}()
		if c.DevicePlugin {
			go func() {
				if err := devices.NewPlugins(mgr, c.KubeletPluginDir, c.Replicas).Run(ctx); err != nil {
					klog.ErrorS(err, "Device plugins stopped")
				}
			}()
		}
	}
	owner := sandbox.WithDeviceOwnershipFromSecurityContext(c.DeviceOwnershipFromSecurityContext)
	if len(c.CDISpecDirs) == 0 {
		return mgr, owner, nil
	}
	injOpts := []devices.InjectorOption{devices.WithOwnershipFromSecurityContext(c.DeviceOwnershipFromSecurityContext)}
	if mgr != nil {
		// accel-cri.io names come from the live inventory, not from the
		// spec files written above (which others read, and may delete).
		injOpts = append(injOpts, devices.WithRegistry(mgr))
	}
	inj, err := devices.NewInjector(c.CDISpecDirs, injOpts...)
	if err != nil {
		return nil, nil, err
	}
	var cdi sandbox.CDIInjector = inj
	if count != nil {
		cdi = count(inj)
	}
	withCDI := sandbox.WithCDI(cdi)
	return mgr, func(r *sandbox.Runtime) { owner(r); withCDI(r) }, nil
}
