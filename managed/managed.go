// Package managed owns the containerd daemon that accel-cri starts as a child
// when no existing containerd address is configured (the embedded default):
// its config file, its process, its supervision (restart with backoff when it
// dies) and its orderly stop. containerd's own CRI plugin is disabled in that
// daemon, and its root, state and socket live under accel-cri's directories, so
// it never collides with a system containerd.
//
// Containers survive both a containerd restart and accel-cri's shutdown:
// their shims run in their own process groups and are not children that die
// with containerd. containerd itself survives an accel-cri crash, and the
// next accel-cri adopts it: restarting containerd would make it discard the
// shims of tasks that exited meanwhile, and with them their exit status
// (Options.BeforeStart lets the caller read those before each start). The
// package must not know about pods, images or gRPC beyond the health check
// that says containerd serves.
package managed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/accel-cri/accel-cri/internal/fsutil"
	containerd "github.com/containerd/containerd/v2/client"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// Options configures a managed containerd.
type Options struct {
	// Binary is the containerd executable: a path or a name looked up in PATH.
	Binary string
	// Root holds containerd's persistent state (content, snapshots, metadata).
	Root string
	// State holds containerd's volatile state, its socket, config, pid file and log.
	State string
	// LogLevel is containerd's own log level ("info", "debug", ...). Empty: "info".
	LogLevel string
	// StopTimeout bounds a graceful stop before SIGKILL. Zero: 10s.
	StopTimeout time.Duration
	// StartTimeout bounds the wait for a started containerd to serve. Zero: 30s.
	StartTimeout time.Duration
	// MaxBackoff caps the delay between restarts of a containerd that keeps dying. Zero: 30s.
	MaxBackoff time.Duration
	// BeforeStart, when set, runs before each containerd process is
	// started (the first start, replacing a leftover one, every restart
	// after a death; not when a running one is adopted), while no
	// containerd of this state runs: the last moment to read what the
	// shims hold before containerd loads them and deletes the tasks that
	// stopped meanwhile.
	BeforeStart func(ctx context.Context)
}

// Daemon is one supervised containerd child process.
type Daemon struct {
	opts Options

	mu       sync.Mutex
	proc     *os.Process
	exited   <-chan struct{} // closed when the current process has exited
	status   func() string   // how it exited, once exited is closed
	adopted  bool            // proc was started by an earlier accel-cri
	restarts int
	stopping bool

	stop chan struct{} // closed by Stop: ends the supervisor
	done chan struct{} // closed when the supervisor has returned
}

// New returns a Daemon; nothing runs until Start.
func New(opts Options) *Daemon {
	if opts.Binary == "" {
		opts.Binary = "containerd"
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "info"
	}
	if opts.StopTimeout == 0 {
		opts.StopTimeout = 10 * time.Second
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 30 * time.Second
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	return &Daemon{opts: opts, stop: make(chan struct{}), done: make(chan struct{})}
}

// Address is the unix socket of the managed containerd's gRPC API.
func (d *Daemon) Address() string { return filepath.Join(d.opts.State, "containerd.sock") }

// ConfigPath is the containerd config file accel-cri writes.
func (d *Daemon) ConfigPath() string { return filepath.Join(d.opts.State, "config.toml") }

// PIDFile holds the pid of the running containerd.
// TaskBundleRoot is where containerd keeps its tasks' bundles, per namespace.
func (d *Daemon) TaskBundleRoot() string {
	return filepath.Join(d.opts.State, "daemon", "io.containerd.runtime.v2.task")
}

// PIDFile is where the running containerd's pid is kept.
func (d *Daemon) PIDFile() string { return filepath.Join(d.opts.State, "containerd.pid") }

// LogPath is where containerd's output goes.
func (d *Daemon) LogPath() string { return filepath.Join(d.opts.State, "containerd.log") }

// PID of the running containerd, 0 when none runs.
func (d *Daemon) PID() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.proc == nil {
		return 0
	}
	select {
	case <-d.exited:
		return 0
	default:
		return d.proc.Pid
	}
}

// Restarts counts how often the supervisor restarted a containerd that died.
func (d *Daemon) Restarts() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.restarts
}

// Start writes the config, starts containerd, waits until it serves, and
// starts the supervisor that restarts it when it dies. A containerd left
// running by an earlier accel-cri with the same state directory is stopped
// first, since two daemons cannot share one root.
func (d *Daemon) Start(ctx context.Context) error {
	bin, err := exec.LookPath(d.opts.Binary)
	if err != nil {
		return fmt.Errorf("managed containerd: find binary %q: %w", d.opts.Binary, err)
	}
	d.opts.Binary = bin
	for _, dir := range []string{d.opts.Root, d.opts.State} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return fmt.Errorf("managed containerd: %w", err)
		}
	}
	config := renderConfig(d.opts, d.Address())
	if d.adopt(ctx, config) {
		go d.supervise()
		return nil
	}
	if err := d.stopLeftover(); err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(d.ConfigPath(), config, 0o600); err != nil {
		return fmt.Errorf("managed containerd: write config: %w", err)
	}
	if err := d.startProcess(ctx); err != nil {
		return err
	}
	go d.supervise()
	return nil
}

// Stop ends supervision and stops containerd gracefully (SIGTERM, then
// SIGKILL after StopTimeout). Container shims keep running.
func (d *Daemon) Stop(ctx context.Context) error {
	d.mu.Lock()
	if d.stopping {
		d.mu.Unlock()
		<-d.done
		return nil
	}
	d.stopping = true
	proc, exited := d.proc, d.exited
	d.mu.Unlock()
	close(d.stop)
	if proc == nil {
		return nil
	}
	err := terminate(ctx, proc, exited, d.opts.StopTimeout)
	<-d.done
	_ = os.Remove(d.PIDFile())
	return err
}

func (d *Daemon) startProcess(ctx context.Context) error {
	if d.opts.BeforeStart != nil {
		d.opts.BeforeStart(ctx)
	}
	rotateLog(d.LogPath(), 10<<20)
	logf, err := os.OpenFile(d.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("managed containerd: open log: %w", err)
	}
	cmd := exec.Command(d.opts.Binary, "--config", d.ConfigPath(), "--log-level", d.opts.LogLevel)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = d.opts.State
	cmd.Env = os.Environ()
	if os.Getenv("GOGC") == "" {
		// As accel-cri's own (cmd/accel-cri): containerd and the shims it
		// starts keep small heaps; 50% growth between collections.
		cmd.Env = append(cmd.Env, "GOGC=50")
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Own process group: a terminal's ^C to accel-cri must not reach
		// containerd, which accel-cri stops in order. No Pdeathsig: a
		// crashed accel-cri leaves containerd running for the next one.
		Setpgid: true,
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("managed containerd: start %s: %w", d.opts.Binary, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	d.mu.Lock()
	d.proc, d.exited, d.adopted = cmd.Process, exited, false
	d.status = func() string { return cmd.ProcessState.String() }
	d.mu.Unlock()
	if err := fsutil.WriteFileAtomic(d.PIDFile(), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		klog.ErrorS(err, "Cannot write containerd pid file", "path", d.PIDFile())
	}
	if err := d.waitServing(ctx, exited); err != nil {
		_ = terminate(context.Background(), cmd.Process, exited, d.opts.StopTimeout)
		return err
	}
	klog.InfoS("Managed containerd is serving", "pid", cmd.Process.Pid, "address", d.Address())
	return nil
}

// waitServing blocks until containerd answers its health service, the
// process exits, or the start timeout passes. Nothing signals that the socket
// has started to accept, so this retries briefly, bounded by StartTimeout.
func (d *Daemon) waitServing(ctx context.Context, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, d.opts.StartTimeout)
	defer cancel()
	go func() {
		select {
		case <-exited:
			cancel()
		case <-ctx.Done():
		}
	}()
	var lastErr error
	for ctx.Err() == nil {
		lastErr = d.healthCheck(ctx)
		if lastErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	select {
	case <-exited:
		return fmt.Errorf("managed containerd exited during start; last log lines:\n%s", tailFile(d.LogPath(), 20))
	default:
	}
	return fmt.Errorf("managed containerd did not serve within %s: %v; last log lines:\n%s", d.opts.StartTimeout, lastErr, tailFile(d.LogPath(), 20))
}

func (d *Daemon) healthCheck(ctx context.Context) error {
	if _, err := os.Stat(d.Address()); err != nil {
		return err
	}
	c, err := containerd.New(d.Address(), containerd.WithTimeout(2*time.Second))
	if err != nil {
		return err
	}
	defer c.Close()
	ok, err := c.IsServing(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("containerd health service reports not serving")
	}
	return nil
}

// supervise restarts containerd whenever it exits unasked, with exponential
// backoff reset after a stable run, until Stop.
func (d *Daemon) supervise() {
	defer close(d.done)
	backoff := time.Second
	for {
		d.mu.Lock()
		exited, started := d.exited, time.Now()
		d.mu.Unlock()
		select {
		case <-d.stop:
			return
		case <-exited:
		}
		d.mu.Lock()
		code := d.status()
		d.mu.Unlock()
		if time.Since(started) > time.Minute {
			backoff = time.Second
		}
		klog.ErrorS(nil, "Managed containerd exited; restarting", "status", code, "backoff", backoff, "lastLog", tailFile(d.LogPath(), 5))
		for {
			select {
			case <-d.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, d.opts.MaxBackoff)
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				select {
				case <-d.stop:
					cancel()
				case <-ctx.Done():
				}
			}()
			err := d.startProcess(ctx)
			cancel()
			if err == nil {
				d.mu.Lock()
				d.restarts++
				d.mu.Unlock()
				break
			}
			klog.ErrorS(err, "Restarting managed containerd failed", "nextBackoff", backoff)
		}
	}
}

// leftover returns the containerd an earlier accel-cri started with this
// state directory, if it still runs. It is recognised by the pid file and
// by its command line naming our config path, so no unrelated process is
// ever touched.
func (d *Daemon) leftover() *os.Process {
	data, err := os.ReadFile(d.PIDFile())
	if err != nil {
		return nil
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		return nil
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte(d.ConfigPath())) {
		return nil
	}
	proc, err := os.FindProcess(pid)
	if err != nil {
		return nil
	}
	return proc
}

// adopt takes over a containerd left running by an accel-cri that died (a
// crash does not take containerd down, so tasks that exit meanwhile keep
// their exit status). Only a daemon that was started with exactly the
// config this accel-cri would write, and that serves, is adopted; its exit
// is watched through a pidfd, as it is not our child.
func (d *Daemon) adopt(ctx context.Context, config []byte) bool {
	proc := d.leftover()
	if proc == nil {
		return false
	}
	if old, err := os.ReadFile(d.ConfigPath()); err != nil || !bytes.Equal(old, config) {
		klog.InfoS("Running containerd has another config; restarting it", "pid", proc.Pid)
		return false
	}
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := d.healthCheck(hctx); err != nil {
		klog.InfoS("Running containerd does not serve; restarting it", "pid", proc.Pid, "err", err)
		return false
	}
	exited, err := watchExit(proc.Pid)
	if err != nil {
		klog.InfoS("Cannot watch running containerd; restarting it", "pid", proc.Pid, "err", err)
		return false
	}
	d.mu.Lock()
	d.proc, d.exited, d.adopted = proc, exited, true
	d.status = func() string { return "exited (adopted process)" }
	d.mu.Unlock()
	klog.InfoS("Adopted running managed containerd", "pid", proc.Pid, "address", d.Address())
	return true
}

// watchExit returns a channel closed when the process exits, from a pidfd
// that becomes readable at exit: an event, not polling.
func watchExit(pid int) (<-chan struct{}, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		defer unix.Close(fd)
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			if _, err := unix.Poll(fds, -1); err != unix.EINTR {
				return
			}
		}
	}()
	return exited, nil
}

// stopLeftover stops a containerd left by an earlier accel-cri that could
// not be adopted (another config, or not serving).
func (d *Daemon) stopLeftover() error {
	proc := d.leftover()
	if proc == nil {
		return nil
	}
	klog.InfoS("Stopping containerd left by an earlier accel-cri", "pid", proc.Pid)
	exited, err := watchExit(proc.Pid)
	if err != nil {
		return nil // already gone
	}
	_ = terminate(context.Background(), proc, exited, d.opts.StopTimeout)
	return nil
}

func terminate(ctx context.Context, p *os.Process, exited <-chan struct{}, grace time.Duration) error {
	select {
	case <-exited:
		return nil
	default:
	}
	_ = p.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-exited:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	_ = p.Signal(syscall.SIGKILL)
	<-exited
	return fmt.Errorf("managed containerd did not stop within %s; killed", grace)
}

func rotateLog(path string, limit int64) {
	if st, err := os.Stat(path); err == nil && st.Size() > limit {
		_ = os.Rename(path, path+".1")
	}
}

func tailFile(path string, lines int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
