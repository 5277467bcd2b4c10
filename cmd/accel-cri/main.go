// Command accel-cri is the accel-cri daemon and its small helper commands.
// It parses flags and the config file and wires the packages together; the
// logic lives in those packages.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"

	"github.com/accel-cri/accel-cri/config"
	"github.com/accel-cri/accel-cri/internal/version"
	"k8s.io/klog/v2"
)

const usage = `accel-cri: a Kubernetes CRI runtime on containerd v2 for pods that need accelerators.

Usage:
  accel-cri [flags]            serve the CRI on a unix socket (kubelet:
                               --container-runtime-endpoint unix://<socket>)
  accel-cri config default     print the default config file, every key commented
  accel-cri version            print version, git commit and the containerd version expected
  accel-cri devices [--config FILE] [--json]
                               list the accelerators found, their CDI names and health
  accel-cri check [flags]      preflight: can this node run accel-cri with this config?
                               one line per item, a fix for each problem; exit 1 when
                               a required item fails
  accel-cri help               print this help

Flags override the config file (--config, default %s, optional there).

Flags:
`

// leanGOGC is the garbage collector's target for accel-cri and its managed
// containerd unless GOGC is set: a node daemon's heap is small and its
// memory is the node's, so it collects at 50% growth instead of Go's 100%.
const leanGOGC = 50

// defaultMemProfileRate is Go's heap sampling rate, restored when the
// debug socket can serve heap profiles.
const defaultMemProfileRate = 512 << 10

func main() {
	// Heap sampling costs a 1.4 MiB table and a stack walk per sample;
	// nobody can read the samples unless the debug socket is on (serve
	// turns it back on then). Set first, before anything allocates much.
	runtime.MemProfileRate = 0
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(leanGOGC)
	}
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "accel-cri:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "version":
			fmt.Fprintf(stdout, "accel-cri %s\ncommit: %s\ncontainerd: %s\n", version.Version, version.Commit, version.Containerd())
			return nil
		case "config":
			if len(args) != 2 || args[1] != "default" {
				return errors.New("usage: accel-cri config default")
			}
			b, err := config.Marshal(config.Default())
			if err != nil {
				return err
			}
			_, err = stdout.Write(b)
			return err
		case "devices":
			return runDevices(args[1:], stdout, stderr)
		case "check":
			return runCheck(args[1:], stdout, stderr)
		case "help":
			fs, _ := newFlags(stderr)
			fs.SetOutput(stdout)
			fs.Usage()
			return nil
		}
	}
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	return serve(cfg)
}

// flagValues holds the raw flag values; only the flags actually given
// override the config file.
type flagValues struct {
	config, socket, root, state, containerdAddr, registryConfDir string
	cniConfDir, cniBinDir, sandboxImage, streamingAddr, logLevel string
	metricsAddr                                                  string
	debugSocket                                                  string
}

func newFlags(stderr io.Writer) (*flag.FlagSet, *flagValues) {
	v := &flagValues{}
	fs := flag.NewFlagSet("accel-cri", flag.ContinueOnError)
	fs.SetOutput(stderr)
	d := config.Default()
	fs.StringVar(&v.config, "config", config.DefaultPath, "TOML config file")
	fs.StringVar(&v.socket, "socket", d.Socket, "CRI unix socket (mode 0660)")
	fs.StringVar(&v.root, "root", d.Root, "persistent state directory")
	fs.StringVar(&v.state, "state", d.State, "volatile state directory")
	fs.StringVar(&v.containerdAddr, "containerd-address", "", "existing containerd socket; empty starts a managed containerd")
	fs.StringVar(&v.registryConfDir, "registry-config-dir", "", "containerd-style hosts.toml tree for mirrors, plain-HTTP and self-signed registries")
	fs.StringVar(&v.cniConfDir, "cni-conf-dir", d.CNIConfDir, "CNI network config directory")
	fs.StringVar(&v.cniBinDir, "cni-bin-dir", d.CNIBinDirs[0], "CNI plugin directory (replaces cni_bin_dirs)")
	fs.StringVar(&v.sandboxImage, "sandbox-image", d.SandboxImage, "pause image for pod sandboxes (pinned)")
	fs.StringVar(&v.streamingAddr, "streaming-address", d.StreamingAddr, "exec/attach/port-forward server address")
	fs.StringVar(&v.metricsAddr, "metrics-address", d.MetricsAddr, "Prometheus /metrics address (host:port, e.g. 127.0.0.1:9838); empty: off")
	fs.StringVar(&v.logLevel, "log-level", d.LogLevel, "log verbosity: info, debug, trace")
	fs.StringVar(&v.debugSocket, "debug-socket", d.DebugSocket, "unix socket serving pprof and goroutine dumps (root only); empty: off")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), usage, config.DefaultPath)
		fs.VisitAll(func(f *flag.Flag) {
			fmt.Fprintf(fs.Output(), "  --%s string\n    \t%s", f.Name, f.Usage)
			if f.DefValue != "" {
				fmt.Fprintf(fs.Output(), " (default %q)", f.DefValue)
			}
			fmt.Fprintln(fs.Output())
		})
	}
	return fs, v
}

// parseFlags loads the config file and lays the given flags over it.
func parseFlags(args []string, stderr io.Writer) (config.Config, error) {
	fs, v := newFlags(stderr)
	if err := fs.Parse(args); err != nil {
		return config.Config{}, err
	}
	if fs.NArg() > 0 {
		return config.Config{}, fmt.Errorf("unknown command %q (see accel-cri --help)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	cfg, err := config.Load(v.config, !set["config"])
	if err != nil {
		return cfg, err
	}
	override := map[string]func(){
		"socket":              func() { cfg.Socket = v.socket },
		"root":                func() { cfg.Root = v.root },
		"state":               func() { cfg.State = v.state },
		"containerd-address":  func() { cfg.ContainerdAddr = v.containerdAddr },
		"registry-config-dir": func() { cfg.RegistryConfDir = v.registryConfDir },
		"cni-conf-dir":        func() { cfg.CNIConfDir = v.cniConfDir },
		"cni-bin-dir":         func() { cfg.CNIBinDirs = []string{v.cniBinDir} },
		"sandbox-image":       func() { cfg.SandboxImage = v.sandboxImage },
		"streaming-address":   func() { cfg.StreamingAddr = v.streamingAddr },
		"log-level":           func() { cfg.LogLevel = v.logLevel },
		"metrics-address":     func() { cfg.MetricsAddr = v.metricsAddr },
		"debug-socket":        func() { cfg.DebugSocket = v.debugSocket },
	}
	for name, apply := range override {
		if set[name] {
			apply()
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("invalid configuration: %w", err)
	}
	verbosity, _ := config.ParseLogLevel(cfg.LogLevel)
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	_ = klogFlags.Set("v", strconv.Itoa(verbosity))
	return cfg, nil
}
