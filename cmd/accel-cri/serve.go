package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	ctrdlog "github.com/containerd/log"
	"google.golang.org/grpc"
	"k8s.io/klog/v2"

	"github.com/accel-cri/accel-cri/config"
	"github.com/accel-cri/accel-cri/cri"
	"github.com/accel-cri/accel-cri/images"
	"github.com/accel-cri/accel-cri/images/policy"
	"github.com/accel-cri/accel-cri/internal/cgroups"
	"github.com/accel-cri/accel-cri/internal/debugserver"
	"github.com/accel-cri/accel-cri/internal/version"
	"github.com/accel-cri/accel-cri/managed"
	"github.com/accel-cri/accel-cri/metrics"
	"github.com/accel-cri/accel-cri/sandbox"
	"github.com/accel-cri/accel-cri/sandbox/nri"
	"github.com/accel-cri/accel-cri/sandbox/podnet"
	"github.com/accel-cri/accel-cri/sandbox/shim"
	"github.com/accel-cri/accel-cri/streaming"
)

const (
	maxMsgSize    = 16 << 20
	shutdownGrace = 10 * time.Second
	// cancelGrace bounds the wait for handlers to return after their
	// contexts were cancelled (their undo steps run with their own
	// deadlines and must finish before containerd is stopped).
	cancelGrace      = 20 * time.Second
	containerdDialTO = 30 * time.Second
)

// serve runs the daemon until SIGTERM or SIGINT. On the way out it stops
// serving, closes the socket and stops the managed containerd; containers
// keep running and are adopted by the next start.
func serve(cfg config.Config) error {
	ctx, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stopSignals()
	// containerd's client logs every plain-HTTP fallback at info; only its
	// warnings matter unless the operator asked for debug output.
	if cfg.LogLevel == "info" {
		_ = ctrdlog.SetLevel("warn")
	}
	klog.InfoS("Starting accel-cri", "version", version.Version, "commit", version.Commit, "containerd", version.Containerd())

	for _, dir := range []string{cfg.Root, cfg.State} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return err
		}
	}
	// Claim the socket first: a second accel-cri must fail before it
	// touches containerd.
	lis, err := cri.Listen(cfg.Socket)
	if err != nil {
		return err
	}
	defer lis.Close()
	if cfg.DebugSocket != "" {
		runtime.MemProfileRate = defaultMemProfileRate
		dbg, err := debugserver.Start(cfg.DebugSocket)
		if err != nil {
			return err
		}
		klog.InfoS("Serving pprof and goroutine dumps", "socket", cfg.DebugSocket)
		defer func() {
			stopCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			logErr(dbg.Close(stopCtx), "Stopping the debug server")
		}()
	}

	// The series are always kept (an observation is a few atomic adds);
	// metrics_address only decides whether they are served.
	m := metrics.New()

	oom, err := sandbox.DetectOOMScoreRange("/proc/self/oom_score_adj")
	if err != nil {
		return err
	}
	if oom.Restricted {
		klog.InfoS("This host does not permit lowering oom_score_adj (no CAP_SYS_RESOURCE); container values below the minimum are clamped", "min", oom.Min)
	}

	sandboxRoot, sandboxState := filepath.Join(cfg.Root, "sandbox"), filepath.Join(cfg.State, "sandbox")
	address := cfg.ContainerdAddr
	var daemon *managed.Daemon
	if address == "" {
		daemon = managed.New(managed.Options{
			Binary: cfg.ContainerdBinary,
			Root:   filepath.Join(cfg.Root, "containerd"),
			State:  filepath.Join(cfg.State, "containerd"),
			// Before each start of containerd (also by the supervisor):
			// it deletes the tasks that stopped while none ran, exits
			// and all; their shims still hold the exits.
			BeforeStart: func(ctx context.Context) { harvestExits(ctx, daemon, cfg.Namespace, sandboxState) },
		})
		if err := daemon.Start(ctx); err != nil {
			return err
		}
		defer func() {
			stopCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
			defer cancel()
			if err := daemon.Stop(stopCtx); err != nil {
				klog.ErrorS(err, "Stopping managed containerd")
			}
		}()
		address = daemon.Address()
		m.Register(metrics.WithContainerd(daemon))
	}
	client, err := containerd.New(address, containerd.WithDefaultNamespace(cfg.Namespace), containerd.WithTimeout(containerdDialTO))
	if err != nil {
		return fmt.Errorf("connect to containerd at %s: %w", address, err)
	}
	defer client.Close()

	initCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	sigPolicy := policy.NewStore(cfg.SignaturePolicy, cfg.SignaturePolicyDir)
	logPolicyFiles(sigPolicy)
	imgs, err := images.New(initCtx, client,
		images.WithSnapshotter(cfg.Snapshotter),
		images.WithRegistryConfigDir(cfg.RegistryConfDir),
		images.WithPullProgressTimeout(time.Duration(cfg.PullProgressTime)),
		images.WithPinnedImages(cfg.SandboxImage),
		images.WithObserver(m),
		images.WithSignaturePolicy(sigPolicy),
		images.WithSignatureObserver(m),
	)
	if err != nil {
		return fmt.Errorf("image service: %w", err)
	}
	network, err := podnet.New(cfg.CNIConfDir, cfg.CNIBinDirs, podnet.WithCNIObserver(m))
	if err != nil {
		return err
	}
	defer network.Close()
	driver := cgroups.ResolveDriver(cfg.CgroupDriver, cgroups.SystemdPID1(cgroups.OS{}))
	devMgr, cdiOpt, err := startDevices(ctx, cfg.Devices, m.CountAllocations)
	if err != nil {
		return err
	}
	if devMgr != nil {
		m.Register(metrics.WithDevices(devMgr))
	}
	rt, err := sandbox.New(client,
		sandbox.WithNetwork(network),
		sandbox.WithOOMScoreRange(oom),
		sandbox.WithCgroupDriver(driver),
		sandbox.WithImages(imgs),
		sandbox.WithSandboxImage(cfg.SandboxImage),
		sandbox.WithSnapshotter(cfg.Snapshotter),
		sandbox.WithNamespace(cfg.Namespace),
		sandbox.WithDirs(sandboxRoot, sandboxState),
		sandbox.WithShmSize(cfg.PodShmSize),
		sandbox.WithStatsCollectionPeriod(time.Duration(cfg.StatsPeriod)),
		sandbox.WithInfraContainer(cfg.InfraContainer),
		taskBundles(daemon),
		sandbox.WithHandlers(handlerConfigs(cfg.Runtimes), cfg.DefaultRuntime),
		cdiOpt,
		nriOption(cfg),
	)
	if err != nil {
		return err
	}
	if err := rt.Start(initCtx); err != nil {
		return fmt.Errorf("recover pods and containers: %w", err)
	}
	defer rt.Close()
	stopDRA, err := startDRA(initCtx, cfg.Devices, devMgr)
	if err != nil {
		return err
	}
	defer stopDRA()
	m.Register(metrics.WithRuntime(rt))
	if cfg.MetricsAddr != "" {
		msrv, err := metrics.Listen(cfg.MetricsAddr, m)
		if err != nil {
			return err
		}
		go func() {
			// Serve fails only when the listener breaks; the CRI goes on.
			logErr(msrv.Serve(), "Metrics server stopped")
		}()
		defer func() { logErr(msrv.Close(), "Stopping the metrics server") }()
		if !config.IsLoopbackAddr(cfg.MetricsAddr) {
			klog.Warningf("Metrics are served on %s, not on a loopback address: whoever reaches the port reads them (put a firewall in front, or use 127.0.0.1)", msrv.Addr())
		}
		klog.InfoS("Serving metrics", "url", "http://"+msrv.Addr().String()+"/metrics")
	}

	// The streaming server listens before the CRI is served, so every
	// URL handed out is reachable; it stops before the runtime closes.
	stream, err := streaming.New(streaming.Config{
		Addr:        cfg.StreamingAddr,
		TLSCertFile: cfg.StreamingTLSCert,
		TLSKeyFile:  cfg.StreamingTLSKey,
	}, rt)
	if err != nil {
		return err
	}
	streamErr := make(chan error, 1)
	go func() { streamErr <- stream.Serve() }()
	defer func() { logErr(stream.Close(), "Stopping the streaming server") }()
	klog.InfoS("Serving exec/attach/port-forward streams", "url", stream.URL())

	srv := cri.NewServer(imgs, rt,
		cri.WithStreamer(stream),
		cri.WithVersion(cri.VersionInfo{Version: version.Version, Commit: version.Commit}),
		cri.WithStatusInfo(func() map[string]any {
			info := map[string]any{
				"config":       cfg,
				"cgroupDriver": driver,
				"oomScoreAdj":  map[string]any{"min": oom.Min, "restricted": oom.Restricted},
				"containerd":   map[string]any{"address": address, "managed": daemon != nil, "expectedVersion": version.Containerd()},
			}
			if daemon != nil {
				info["containerd"].(map[string]any)["pid"] = daemon.PID()
				info["containerd"].(map[string]any)["restarts"] = daemon.Restarts()
			}
			if st := rt.NRIStatus(); st != nil {
				info["nri"] = st
			}
			return info
		}),
	)
	g := grpc.NewServer(
		// metrics first: it sees the codes cri's interceptor maps errors to.
		grpc.ChainUnaryInterceptor(m.UnaryInterceptor, cri.UnaryInterceptor),
		grpc.ChainStreamInterceptor(m.StreamInterceptor, cri.StreamInterceptor),
		cri.ServerCodec(),
		grpc.MaxRecvMsgSize(maxMsgSize),
		grpc.MaxSendMsgSize(maxMsgSize),
		// Stop returns only when every handler has returned, so no
		// handler still works on containerd after the shutdown steps
		// below closed the client and stopped containerd.
		grpc.WaitForHandlers(true),
	)
	srv.Register(g)

	serveErr := make(chan error, 1)
	go func() { serveErr <- g.Serve(lis) }()
	klog.InfoS("Serving CRI", "socket", cfg.Socket, "containerd", address, "managed", daemon != nil, "cgroupDriver", driver)

	select {
	case <-ctx.Done():
		klog.InfoS("Shutting down; running containers keep running")
	case err := <-serveErr:
		if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("serve CRI: %w", err)
		}
	case err := <-streamErr:
		// Serve returns only after Close, or when the listener broke.
		klog.ErrorS(err, "Streaming server stopped; shutting down")
		g.Stop()
		return fmt.Errorf("serve streams: %w", err)
	}
	stopGRPC(g, shutdownGrace, cancelGrace)
	return nil
}

// stopGRPC stops taking new calls at once and lets the calls in flight
// finish for grace; then cancels them (their contexts end, clients get
// Unavailable/Canceled) and waits up to cancelWait for the handlers, which
// undo what they half made, to return.
func stopGRPC(g *grpc.Server, grace, cancelWait time.Duration) {
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
		return
	case <-time.After(grace):
		klog.InfoS("Cancelling calls still in flight after the grace period", "grace", grace)
	}
	go g.Stop()
	select {
	case <-stopped:
	case <-time.After(cancelWait):
		klog.InfoS("Handlers still running after cancellation; exiting anyway", "waited", cancelWait)
	}
}

// handlerConfigs turns the [runtimes] tables into the sandbox's handler
// configs; defaults that depend on --state are resolved by sandbox.New.
func handlerConfigs(rts map[string]config.RuntimeConfig) map[string]sandbox.HandlerConfig {
	out := make(map[string]sandbox.HandlerConfig, len(rts))
	for name, rc := range rts {
		out[name] = sandbox.HandlerConfig{
			Type:                         rc.Type,
			BinaryName:                   rc.OCIBinary(),
			Root:                         rc.Root,
			ConfigPath:                   rc.ConfigPath,
			PrivilegedWithoutHostDevices: rc.PrivilegedWithoutHostDevices,
			SandboxPerContainer:          rc.SandboxPerContainer,
			PodAnnotations:               rc.PodAnnotations,
			ContainerAnnotations:         rc.ContainerAnnotations,
			Snapshotter:                  rc.Snapshotter,
		}
	}
	return out
}

// nriOption switches NRI on as [nri] says.
func nriOption(cfg config.Config) sandbox.Option {
	n := cfg.NRI
	if !n.Enable {
		return func(*sandbox.Runtime) {}
	}
	v := n.DefaultValidator
	return sandbox.WithNRI(nri.Config{
		SocketPath:          cfg.NRISocket(),
		PluginPath:          n.PluginPath,
		PluginConfigPath:    n.PluginConfigPath,
		RegistrationTimeout: time.Duration(n.RegistrationTime),
		RequestTimeout:      time.Duration(n.RequestTime),
		ExternalPlugins:     n.ExternalPlugins,
		Validator: nri.ValidatorConfig{
			Enable:                           v.Enable,
			RejectOCIHookAdjustment:          v.RejectOCIHookAdjustment,
			RejectRuntimeDefaultSeccomp:      v.RejectRuntimeDefaultSeccomp,
			RejectUnconfinedSeccomp:          v.RejectUnconfinedSeccomp,
			RejectCustomSeccomp:              v.RejectCustomSeccomp,
			RejectNamespaceAdjustment:        v.RejectNamespaceAdjustment,
			RejectSysctlAdjustment:           v.RejectSysctlAdjustment,
			RequiredPlugins:                  v.RequiredPlugins,
			TolerateMissingPluginsAnnotation: v.TolerateMissingPluginsAnnotation,
		},
		RuntimeName:    "accel-cri",
		RuntimeVersion: version.Version,
	})
}

// taskBundles locates the managed containerd's task bundles and shim
// sockets for the runtime's cleanup of interrupted task creations; an
// external containerd's are unknown.
func taskBundles(d *managed.Daemon) sandbox.Option {
	if d == nil {
		return sandbox.WithTaskBundles("", "")
	}
	return sandbox.WithTaskBundles(d.TaskBundleRoot(), d.Address())
}

// harvestExitsTimeout bounds reading the exits of stopped tasks from their
// shims before containerd starts (a shim that does not answer costs at
// most a few seconds: sandbox/shim).
const harvestExitsTimeout = 30 * time.Second

// harvestExits keeps the exits the managed containerd's shims hold for
// tasks that stopped while no containerd ran (sandbox.HarvestExits).
func harvestExits(ctx context.Context, d *managed.Daemon, namespace, sandboxState string) {
	ctx, cancel := context.WithTimeout(ctx, harvestExitsTimeout)
	defer cancel()
	sandbox.HarvestExits(ctx, sandboxState, shim.Config{Namespace: namespace, BundleRoot: d.TaskBundleRoot(), Address: d.Address()})
}

// logErr logs an error of a shutdown step.
func logErr(err error, msg string) {
	if err != nil {
		klog.ErrorS(err, msg)
	}
}

// logPolicyFiles reports the signature policy files at start: a file that
// cannot be used refuses every pull under it, so it is logged as an error
// now rather than found at the first pull.
func logPolicyFiles(store *policy.Store) {
	if !store.Enabled() {
		return
	}
	checks, err := store.Check()
	if err != nil {
		klog.ErrorS(err, "Cannot list the signature policy directory")
	}
	for _, c := range checks {
		if c.Err != nil {
			klog.ErrorS(c.Err, "Signature policy file cannot be used: pulls under it are refused", "file", c.File, "namespace", c.Namespace)
			continue
		}
		klog.InfoS("Signature policy", "file", c.File, "namespace", c.Namespace, "scopes", c.Scopes)
	}
}
