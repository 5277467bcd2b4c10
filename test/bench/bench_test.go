//go:build bench

// Package bench is the A/B benchmark: accel-cri (managed containerd)
// against containerd v2.2.9's own CRI plugin, same containerd binary, runc,
// CNI conflist and pause image, in alternating rounds A B A B so that
// machine drift cancels out of the per-round ratios. It is a benchmark, not
// a timed test: a target missed is reported, never a failure. Run it with
// `make bench` (full size, into docs/bench) or, small:
//
//	go test -tags bench -count=1 -v ./test/bench -args -pods 4 -rounds 1 -list-pods 10 -list-iterations 20
package bench

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/accel-cri/accel-cri/internal/bench"
	"github.com/accel-cri/accel-cri/internal/cgroups"
	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

var (
	pods           = flag.Int("pods", envInt("BENCH_PODS", 20), "pod lifecycles per concurrency per round (BENCH_PODS)")
	concurrency    = flag.String("concurrency", envStr("BENCH_CONCURRENCY", "1,8"), "comma-separated concurrencies (BENCH_CONCURRENCY)")
	rounds         = flag.Int("rounds", envInt("BENCH_ROUNDS", 3), "A B rounds (BENCH_ROUNDS)")
	listPods       = flag.Int("list-pods", envInt("BENCH_LIST_PODS", 100), "pods running during the List polling (BENCH_LIST_PODS)")
	listIterations = flag.Int("list-iterations", envInt("BENCH_LIST_ITERATIONS", 100), "polls of each List call (BENCH_LIST_ITERATIONS)")
	outDir         = flag.String("out", envStr("BENCH_OUT", ""), "directory for results.json, results.md, latency.svg (BENCH_OUT; default: a temp dir)")
)

func envStr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func envInt(k string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(k)); err == nil {
		return v
	}
	return def
}

func TestMain(m *testing.M) {
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "the benchmark needs root (containerd, mounts, network namespaces)")
		os.Exit(1)
	}
	for _, b := range []string{"containerd", "containerd-shim-runc-v2", "runc", framework.RegistryBinary, "go"} {
		if _, err := exec.LookPath(b); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %s not found: run hack/install-deps.sh (make deps)\n", b)
			os.Exit(1)
		}
	}
	framework.SweepStale(framework.StderrT{})
	code := m.Run()
	framework.CleanupBinaries()
	os.Exit(code)
}

func parseConcurrency(t *testing.T, s string) []int {
	var cs []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			t.Fatalf("-concurrency: bad value %q", f)
		}
		cs = append(cs, n)
	}
	return cs
}

// TestAccelCRIVersusContainerdCRI runs the rounds and writes the reports.
func TestAccelCRIVersusContainerdCRI(t *testing.T) {
	if *rounds < 1 || *pods < 1 {
		t.Fatalf("-rounds and -pods must be at least 1")
	}
	cs := parseConcurrency(t, *concurrency)
	out := *outDir
	if out == "" {
		out = t.TempDir()
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}

	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	imgs := framework.PushTestImages(t, reg, "library/")
	// Info, not the suite's debug: logging every call would be measured.
	a := framework.StartAccelCRI(t, framework.AccelCRIOptions{SandboxImage: imgs.Pause.Ref, WithCNI: true,
		ExtraArgs: []string{"--log-level", "info"}})
	// The same conflist (network, bridge, IPAM dir): the runtimes never run
	// at the same time.
	ctrd := framework.StartContainerdCRI(t, filepath.Join(a.Dir, "containerd-cri"), a.CNIConfDir, imgs.Pause.Ref, reg.Host())

	type side struct {
		rt  bench.Runtime
		im  bench.Images
		cfg bench.Config
	}
	base := bench.Config{
		Image: imgs.Busybox.Ref, SandboxImage: imgs.Pause.Ref,
		Pods: *pods, Concurrency: cs, ListPods: *listPods, ListIterations: *listIterations, Warmup: 2,
		LogDir: filepath.Join(a.Dir, "bench-logs"),
		Logf:   t.Logf,
	}
	accel := side{rt: a.Runtime, im: a.Images, cfg: base}
	accel.cfg.Label = "accel-cri"
	accel.cfg.CgroupParent = a.CgroupRoot() + "/bench-accel-cri"
	accel.cfg.Procs = []bench.ProcGroup{
		{Name: "accel-cri", Pids: bench.Pids(a.PID())},
		{Name: "containerd", Pids: bench.Pids(a.ContainerdPID())},
		{Name: "shims", Shims: true, Pids: bench.PidsMatching("containerd-shim", a.State)},
	}
	// The floor under accel-cri's List latencies, measured in each of its
	// rounds with its pods running (docs/benchmarks.md).
	fl := newFloorRunner(t, a.ContainerdAddress(), "accel-cri", *listIterations, *listPods)
	accel.cfg.Floor = fl.run
	cri := side{rt: ctrd.Runtime, im: ctrd.Images, cfg: base}
	cri.cfg.Label = "containerd CRI"
	cri.cfg.CgroupParent = a.CgroupRoot() + "/bench-containerd-cri"
	cri.cfg.Procs = []bench.ProcGroup{
		{Name: "containerd", Pids: bench.Pids(ctrd.PID())},
		{Name: "shims", Shims: true, Pids: bench.PidsMatching("containerd-shim", ctrd.Dir)},
	}
	if a.ContainerdPID() == 0 {
		t.Fatal("no managed containerd pid")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Hour)
	defer cancel()
	var rs []bench.Round
	started := time.Now()
	for i := range *rounds {
		var r bench.Round
		for j, s := range []side{accel, cri} {
			t.Logf("round %d/%d: %s", i+1, *rounds, s.cfg.Label)
			res, err := bench.Run(ctx, s.rt, s.im, s.cfg)
			if err != nil {
				t.Fatalf("round %d, %s: %v", i+1, s.cfg.Label, err)
			}
			if j == 0 {
				r.A = res
			} else {
				r.B = res
			}
		}
		rs = append(rs, r)
	}
	// The command line tool against the same accel-cri, at a tiny size: it
	// works on any endpoint and writes its three outputs.
	t.Run("accel-cri-bench command", func(t *testing.T) {
		runCLI(t, a, imgs.Busybox.Ref)
	})
	cmp := bench.Compare(rs, "accel-cri")
	writeReports(t, out, cmp, time.Since(started))
	for _, tg := range cmp.Targets {
		if !tg.Pass {
			t.Logf("MISS (reported, not a failure): %s: %s, goal %s %s", tg.Name, strconv.FormatFloat(tg.Value, 'g', 3, 64), tg.Op, strconv.FormatFloat(tg.Limit, 'g', 3, 64))
		}
	}
}

func writeReports(t *testing.T, out string, cmp *bench.Comparison, took time.Duration) {
	t.Helper()
	var md strings.Builder
	c0 := cmp.Rounds[0].A
	fmt.Fprintf(&md, "## accel-cri vs containerd CRI\n\n")
	fmt.Fprintf(&md, "%s, %d CPUs, kernel %s, %s; %d rounds, %d pods per concurrency %v, %d pods while polling (%d polls each), %s in all.\n\n",
		c0.Started.Format("2006-01-02 15:04 UTC"), runtime.NumCPU(), kernel(), cgroupMode(), len(cmp.Rounds), *pods, concurrencyList(c0), *listPods, *listIterations, took.Round(time.Second))
	if err := bench.WriteComparisonMarkdown(&md, cmp); err != nil {
		t.Fatal(err)
	}
	md.WriteString("![latency](latency.svg)\n")
	files := map[string]func(f *os.File) error{
		"results.md":   func(f *os.File) error { _, err := f.WriteString(md.String()); return err },
		"results.json": func(f *os.File) error { return bench.WriteJSON(f, cmp) },
		"latency.svg":  func(f *os.File) error { return bench.WriteSVG(f, bench.ComparisonChart(cmp)) },
	}
	for name, write := range files {
		f, err := os.Create(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		err = write(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	fmt.Print(md.String()) // shown with -v
	t.Logf("wrote results.md, results.json, latency.svg to %s", out)
}

func concurrencyList(r *bench.Result) []int {
	var cs []int
	for _, l := range r.Lifecycle {
		cs = append(cs, l.Concurrency)
	}
	return cs
}

func kernel() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}

func cgroupMode() string {
	if cgroups.Local().V2() {
		return "cgroup v2"
	}
	return "cgroup v1"
}

func runCLI(t *testing.T, a *framework.AccelCRI, image string) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "accel-cri-bench")
	build := exec.Command("go", "build", "-o", bin, "./cmd/accel-cri-bench")
	build.Dir = framework.ModuleRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build accel-cri-bench: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--endpoint", "unix://"+a.Socket, "--image", image, "--label", "accel-cri (CLI)",
		"--pods", "2", "--concurrency", "2", "--list-pods", "3", "--list-iterations", "3", "--warmup", "0",
		"--pids", fmt.Sprintf("accel-cri=%d", a.PID()), "--pids", fmt.Sprintf("containerd=%d", a.ContainerdPID()), "--shims", "shims="+a.State,
		"--cgroup-parent", a.CgroupRoot()+"/bench-cli", "--log-dir", filepath.Join(dir, "logs"),
		"--json", filepath.Join(dir, "r.json"), "--markdown", filepath.Join(dir, "r.md"), "--svg", filepath.Join(dir, "r.svg"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("accel-cri-bench: %v\n%s", err, out)
	}
	for _, want := range []string{"### accel-cri (CLI)", "| 2 | 2 |", "| ListContainerStats |", "| accel-cri | 3 pods, polling | 1 |"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("accel-cri-bench output lacks %q:\n%s", want, out)
		}
	}
	for _, f := range []string{"r.json", "r.md", "r.svg"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s not written: %v", f, err)
		}
	}
	// It removed its pods.
	pods, err := a.Runtime.ListPodSandbox(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != 0 {
		t.Errorf("%d pods left after accel-cri-bench", len(pods))
	}
}
