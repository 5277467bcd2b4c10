// Command accel-cri-bench benchmarks any CRI endpoint the way kubelet uses
// it: the pod lifecycle at several concurrencies, kubelet's List polling
// with many pods running, and the memory and CPU of the runtime's
// processes. See docs/benchmarks.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	remote "k8s.io/cri-client/pkg"

	"github.com/accel-cri/accel-cri/internal/bench"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "accel-cri-bench:", err)
		os.Exit(1)
	}
}

// options are the command line.
type options struct {
	endpoint, label              string
	cfg                          bench.Config
	jsonOut, mdOut, svgOut       string
	timeout, hold                time.Duration
	concurrency, pids, shimMatch stringList
}

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, " ") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("accel-cri-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.endpoint, "endpoint", "", "CRI endpoint, unix:///path/to.sock (required)")
	fs.StringVar(&o.cfg.Label, "label", "", "runtime name in the reports (default: the endpoint)")
	fs.StringVar(&o.cfg.Image, "image", "", "image with sleep and echo run in each pod, e.g. busybox; pulled when absent (required)")
	fs.StringVar(&o.cfg.SandboxImage, "sandbox-image", "", "pause image to pull before the run (optional)")
	fs.IntVar(&o.cfg.Pods, "pods", 20, "pod lifecycles per concurrency")
	fs.Var(&o.concurrency, "concurrency", "lifecycles in flight, comma-separated and/or repeated (default 1,8)")
	fs.IntVar(&o.cfg.ListPods, "list-pods", 100, "pods running during the List polling (0 skips it)")
	fs.IntVar(&o.cfg.ListIterations, "list-iterations", 100, "polls of each List call")
	fs.IntVar(&o.cfg.Warmup, "warmup", 1, "untimed lifecycles first")
	fs.Var(&o.pids, "pids", "process group NAME=PID[,PID...] to sample (repeatable), e.g. accel-cri=1234")
	fs.Var(&o.shimMatch, "shims", "shim group NAME=SUBSTRING: containerd-shim* processes whose command line contains SUBSTRING (repeatable)")
	fs.StringVar(&o.cfg.CgroupParent, "cgroup-parent", "", "cgroupfs parent for the pods' cgroups (pod<uid> below it)")
	fs.StringVar(&o.cfg.RuntimeHandler, "runtime-handler", "", "runtime handler for RunPodSandbox")
	fs.StringVar(&o.cfg.LogDir, "log-dir", "", "directory for the pods' log directories (default: a temp dir)")
	fs.StringVar(&o.jsonOut, "json", "", "write the result as JSON to this file")
	fs.StringVar(&o.mdOut, "markdown", "", "write the Markdown tables to this file (always printed to stdout)")
	fs.StringVar(&o.svgOut, "svg", "", "write the latency chart (SVG) to this file")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Minute, "bound for the whole run")
	fs.DurationVar(&o.hold, "hold", 0, "keep the steady-state pods running this long before the polling, to profile the runtime with them")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.endpoint == "" || o.cfg.Image == "" {
		return nil, errors.New("--endpoint and --image are required")
	}
	if o.hold > 0 && o.cfg.ListPods == 0 {
		return nil, errors.New("--hold needs --list-pods > 0: it holds the steady-state pods")
	}
	if o.cfg.Label == "" {
		o.cfg.Label = o.endpoint
	}
	if len(o.concurrency) == 0 {
		o.concurrency = stringList{"1,8"}
	}
	for _, s := range o.concurrency {
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				return nil, fmt.Errorf("--concurrency: bad value %q", f)
			}
			o.cfg.Concurrency = append(o.cfg.Concurrency, n)
		}
	}
	for _, s := range o.pids {
		name, list, ok := strings.Cut(s, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("--pids: want NAME=PID[,PID...], got %q", s)
		}
		var pids []int
		for _, f := range strings.Split(list, ",") {
			pid, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || pid < 1 {
				return nil, fmt.Errorf("--pids %s: bad pid %q", name, f)
			}
			pids = append(pids, pid)
		}
		o.cfg.Procs = append(o.cfg.Procs, bench.ProcGroup{Name: name, Pids: bench.Pids(pids...)})
	}
	for _, s := range o.shimMatch {
		name, sub, ok := strings.Cut(s, "=")
		if !ok || name == "" || sub == "" {
			return nil, fmt.Errorf("--shims: want NAME=SUBSTRING, got %q", s)
		}
		o.cfg.Procs = append(o.cfg.Procs, bench.ProcGroup{Name: name, Shims: true, Pids: bench.PidsMatching("containerd-shim", sub)})
	}
	return o, nil
}

func run(args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	// The first signal cancels the run, which then removes its pods; a
	// second one kills the process the default way.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop()
	}()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	rt, err := remote.NewRemoteRuntimeService(ctx, o.endpoint, 2*time.Minute, nil, false)
	if err != nil {
		return err
	}
	defer rt.Close(context.Background())
	im, err := remote.NewRemoteImageService(ctx, o.endpoint, 2*time.Minute, nil, false)
	if err != nil {
		return err
	}
	defer im.Close(context.Background())
	o.cfg.Logf = func(format string, args ...any) {
		fmt.Fprintf(stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
	if o.hold > 0 {
		o.cfg.Hold = func(ctx context.Context) error {
			fmt.Fprintf(stderr, "%s holding %d pods for %s (interrupt to end the run)\n", time.Now().Format("15:04:05"), o.cfg.ListPods, o.hold)
			select {
			case <-time.After(o.hold):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	res, err := bench.Run(ctx, rt, im, o.cfg)
	if err != nil {
		return err
	}
	return writeOutputs(o, res, stdout)
}

func writeOutputs(o *options, res *bench.Result, stdout io.Writer) error {
	if err := bench.WriteMarkdown(stdout, res); err != nil {
		return err
	}
	outs := []struct {
		path  string
		write func(io.Writer) error
	}{
		{o.jsonOut, func(w io.Writer) error { return bench.WriteJSON(w, res) }},
		{o.mdOut, func(w io.Writer) error { return bench.WriteMarkdown(w, res) }},
		{o.svgOut, func(w io.Writer) error { return bench.WriteSVG(w, bench.ResultChart(res)) }},
	}
	for _, out := range outs {
		if out.path == "" {
			continue
		}
		f, err := os.Create(out.path)
		if err != nil {
			return err
		}
		err = out.write(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("%s: %w", out.path, err)
		}
	}
	return nil
}
