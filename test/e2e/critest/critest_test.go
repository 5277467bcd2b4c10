package critest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/hack/testimages"
	"github.com/accel-cri/accel-cri/internal/cgroups"
	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// critestVersion is the critest release this suite runs
// (hack/install-deps.sh builds it).
const critestVersion = "1.37.0"

// skips are the only specs not run, each for a reason of this machine or of
// the stand-in images. A spec critest skips by itself for any other reason
// fails the test.
var skips = []struct{ spec, reason string }{
	{`\[k8s\.io\] AppArmor `,
		"no AppArmor here: the kernel has no AppArmor (/sys/module/apparmor), so there are no profiles to load or enforce"},
	{`\[k8s\.io\] Image Manager public image with digest should be pulled and removed`,
		"pulls gcr.io/k8s-staging-cri-tools/test-image-digest by the digest of its upstream bytes; no registry is reachable and no local stand-in can have that digest"},
}

// nriConfig is accel-cri's [nri] table for critest: NRI as by default
// (critest gets its socket, -nri-socket) except the request timeout.
// Two synchronization specs hold a plugin's Synchronize open for 2 s on
// purpose, to create containers meanwhile; with the default timeout, 2 s
// (containerd's), accel-cri disconnects that plugin just as it answers,
// the plugin misses those containers and critest skips both specs as
// "lost containers" (seen: docs/conformance.md). The other hooks critest
// holds open are released within milliseconds.
const nriConfig = `
[nri]
  plugin_request_timeout = "10s"
`

// notValidation matches the specs critest leaves out of every validation
// run by itself (cmd/critest sets -ginkgo.skip=benchmark; -benchmark runs
// them): they are not counted.
var notValidation = regexp.MustCompile(`benchmark`)

// TestCritest runs critest against a fresh accel-cri.
func TestCritest(t *testing.T) {
	start := time.Now()
	critest := critestBinary(t)

	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	pushStandins(t, reg)

	hosts := map[string]string{}
	for _, h := range testimages.CritestRegistries {
		hosts[h] = mirrorHostsTOML(h, reg.Host())
	}
	a := framework.StartAccelCRI(t, framework.AccelCRIOptions{
		RegistryHosts: hosts,
		WithCNI:       true,
		IPCNamespace:  true,
		Config:        fmt.Sprintf("sandbox_image = %q\n", testimages.CritestSandboxImage) + nriConfig,
	})
	ids := watchIDs(t, a)
	parents := existingCgroupParents()
	// Registered after StartAccelCRI, so it runs first, with accel-cri up.
	t.Cleanup(func() { removeLeftovers(t, a, ids, parents) })

	work := t.TempDir()
	tmp := filepath.Join(work, "tmp") // critest's os.TempDir: its host paths, mounts, log dirs
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unmountLeftovers(t, tmp) })

	report := filepath.Join(work, "report.json")
	logPath := filepath.Join(work, "critest.log")
	args := []string{
		"--ipc=" + a.IPCNamespacePath(), "--",
		critest,
		"-runtime-endpoint=unix://" + a.Socket,
		"-image-endpoint=unix://" + a.Socket,
		"-nri-socket=" + a.NRISocket(),
		"-ginkgo.json-report=" + report,
		"-ginkgo.junit-report=" + filepath.Join(work, "junit.xml"),
		"-ginkgo.no-color",
		"-ginkgo.v",
		"-ginkgo.timeout=40m",
	}
	if seed := os.Getenv("CRITEST_SEED"); seed != "" {
		args = append(args, "-ginkgo.seed="+seed)
	}
	for _, s := range skips {
		args = append(args, "-ginkgo.skip="+s.spec)
	}
	if focus := os.Getenv("CRITEST_FOCUS"); focus != "" {
		args = append(args, "-ginkgo.focus="+focus)
	}
	runErr := runCritest(t, work, tmp, logPath, args)

	specs, err := readReport(report)
	if err != nil {
		t.Fatalf("critest (%v) wrote no usable report: %v\ncritest output (tail):\n%s", runErr, err, tail(logPath, 80))
	}
	res := judge(specs, os.Getenv("CRITEST_FOCUS") != "")
	t.Logf("critest v%s against accel-cri in %s: %s", critestVersion, time.Since(start).Round(time.Second), res.summary())
	for _, sk := range skips {
		var names []string
		for _, s := range res.skipped {
			if s.reason == sk.reason {
				names = append(names, s.name)
			}
		}
		if len(names) > 0 {
			t.Logf("skipped %d: %s\n    %s", len(names), sk.reason, strings.Join(names, "\n    "))
		}
	}
	for _, f := range res.failed {
		t.Errorf("FAILED: %s\n%s", f.name, f.detail)
	}
	for _, p := range res.problems {
		t.Error(p)
	}
	if runErr != nil && len(res.failed) == 0 && len(res.problems) == 0 {
		t.Errorf("critest failed (%v) without a failed spec in its report; output (tail):\n%s", runErr, tail(logPath, 80))
	}
	if t.Failed() {
		t.Logf("critest output: %s (kept only while the test runs; CRITEST_REPORT_DIR keeps reports)", logPath)
	}
	if dir := os.Getenv("CRITEST_REPORT_DIR"); dir != "" {
		keepReports(t, dir, work)
	}
	// `go test ./...` hides a passing package's output: with
	// CRITEST_E2E_REPORT set (hack/test.sh), the summary is appended there.
	if path := os.Getenv("CRITEST_E2E_REPORT"); path != "" {
		if err := appendFile(path, res.report(time.Since(start))); err != nil {
			t.Errorf("CRITEST_E2E_REPORT: %v", err)
		}
	}
}

// report is the run's summary for hack/test.sh: the counts, the skips by
// reason, and each failed or self-skipped spec by name.
func (r result) report(took time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "critest v%s against accel-cri (%s): %s\n", critestVersion, took.Round(time.Second), r.summary())
	for _, sk := range skips {
		n := 0
		for _, s := range r.skipped {
			if s.reason == sk.reason {
				n++
			}
		}
		if n > 0 {
			fmt.Fprintf(&b, "  skipped %d (%s): %s\n", n, sk.spec, sk.reason)
		}
	}
	for _, f := range r.failed {
		fmt.Fprintf(&b, "  FAILED: %s\n", f.name)
	}
	for _, p := range r.problems {
		fmt.Fprintf(&b, "  PROBLEM: %s\n", p)
	}
	return b.String()
}

func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// critestBinary finds critest and checks its version.
func critestBinary(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("critest")
	if err != nil {
		t.Fatalf("critest not found (%v): run hack/install-deps.sh --test (make deps), which builds critest v%s", err, critestVersion)
	}
	out, err := exec.Command(bin, "-version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "critest version: "+critestVersion+"\n") {
		t.Fatalf("%s -version = %q, %v; want critest version %s: run hack/install-deps.sh --test", bin, out, err, critestVersion)
	}
	return bin
}

// pushStandins builds the stand-ins for critest's images and pushes them
// under their upstream names (testimages.MirrorRef).
func pushStandins(t *testing.T, reg *framework.Registry) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root := framework.ModuleRoot(t)
	if _, err := os.Stat(testimages.DefaultDynamicBusyboxPath); err != nil {
		t.Fatalf("the busybox for critest's images is missing (%v): run hack/install-deps.sh --test", err)
	}
	opts := testimages.CritestOptions{Busybox: testimages.DefaultDynamicBusyboxPath}
	var err error
	if opts.Standin, err = testimages.BuildStandin(ctx, root, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if opts.Pause39, err = testimages.BuildPauseVersion(ctx, root, t.TempDir(), testimages.CritestPause39); err != nil {
		t.Fatal(err)
	}
	if opts.Pause3101, err = testimages.BuildPauseVersion(ctx, root, t.TempDir(), testimages.CritestPause3101); err != nil {
		t.Fatal(err)
	}
	imgs, err := testimages.CritestImages(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := testimages.PushCritestImages(ctx, reg.Host(), imgs, reg.RemoteOptions(ctx)...); err != nil {
		t.Fatal(err)
	}
}

// mirrorHostsTOML sends pulls from upstream to its repositories in the local
// registry (testimages.MirrorRef). The upstream server is a closed local
// port: nothing leaves the machine.
func mirrorHostsTOML(upstream, registry string) string {
	return fmt.Sprintf(`server = "http://127.0.0.1:1"

[host."http://%s/v2/%s"]
  capabilities = ["pull", "resolve"]
  override_path = true
`, registry, upstream)
}

// runCritest runs critest (args start with nsenter's) with its temp dir in
// tmp and its output in logPath.
func runCritest(t *testing.T, dir, tmp, logPath string, args []string) error {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = critestEnv(tmp)
	// Its own process group: a timeout kills critest and what it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	t.Logf("running critest (output: %s)", logPath)
	return cmd.Run()
}

// critestEnv is the test's environment with TMPDIR set to tmp and without
// proxy settings (critest fetches pod IPs and forwarded ports over HTTP).
func critestEnv(tmp string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToLower(k) {
		case "tmpdir", "http_proxy", "https_proxy", "all_proxy", "no_proxy":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "TMPDIR="+tmp)
}

// specReport is the part of a ginkgo JSON report entry this test reads.
type specReport struct {
	ContainerHierarchyTexts []string
	LeafNodeType            string
	LeafNodeText            string
	State                   string
	RunTime                 time.Duration
	Failure                 struct {
		Message  string
		Location struct {
			FileName   string
			LineNumber int
		}
	}
}

func (s specReport) name() string {
	return strings.Join(append(append([]string{}, s.ContainerHierarchyTexts...), s.LeafNodeText), " ")
}

// readReport reads the specs (It nodes) of ginkgo's JSON report.
func readReport(path string) ([]specReport, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var suites []struct{ SpecReports []specReport }
	if err := json.Unmarshal(b, &suites); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var specs []specReport
	for _, s := range suites {
		for _, r := range s.SpecReports {
			if r.LeafNodeType == "It" {
				specs = append(specs, r)
			}
		}
	}
	if len(specs) == 0 {
		return nil, fmt.Errorf("%s: no specs", path)
	}
	return specs, nil
}

type namedDetail struct{ name, detail string }
type namedReason struct{ name, reason string }

// result sorts a run's specs.
type result struct {
	total, passed int
	// selfSkipped counts the specs critest skipped by itself (each is also
	// a problem).
	selfSkipped int
	failed      []namedDetail
	skipped     []namedReason
	problems    []string
}

func (r result) summary() string {
	return fmt.Sprintf("%d specs: %d passed, %d failed, %d skipped, %d skipped by critest itself", r.total, r.passed, len(r.failed), len(r.skipped), r.selfSkipped)
}

// judge sorts specs into passed, failed and skipped. A spec skipped by the
// skip table is skipped; one critest skipped by itself for another reason,
// or one in a state other than passed, skipped or a failure, is a problem;
// so is a skip entry that matches no spec (unless focused).
func judge(specs []specReport, focused bool) result {
	res := result{total: len(specs)}
	used := make([]bool, len(skips))
	skipREs := make([]*regexp.Regexp, len(skips))
	for i, sk := range skips {
		skipREs[i] = regexp.MustCompile(sk.spec)
	}
	for _, s := range specs {
		name := s.name()
		if s.State == "skipped" && s.Failure.Message == "" && notValidation.MatchString(name) {
			res.total--
			continue
		}
		switch s.State {
		case "passed":
			res.passed++
		case "skipped":
			reason := ""
			for i, re := range skipREs {
				if re.MatchString(name) {
					used[i] = true
					reason = skips[i].reason
					break
				}
			}
			switch {
			case reason != "":
				res.skipped = append(res.skipped, namedReason{name, reason})
			case focused && s.Failure.Message == "":
				// Not in the focus: not run, not counted.
				res.total--
			default:
				res.selfSkipped++
				res.problems = append(res.problems, fmt.Sprintf("critest skipped %q by itself (%s): only the skip table may skip a spec; this one should run and pass", name, strings.TrimSpace(s.Failure.Message)))
			}
		case "failed", "panicked", "timedout", "aborted", "interrupted":
			res.failed = append(res.failed, namedDetail{name, fmt.Sprintf("    state %s after %s at %s:%d\n    %s", s.State, s.RunTime.Round(time.Millisecond),
				s.Failure.Location.FileName, s.Failure.Location.LineNumber, strings.ReplaceAll(strings.TrimSpace(s.Failure.Message), "\n", "\n    "))})
		default:
			res.problems = append(res.problems, fmt.Sprintf("%q ended in state %q", name, s.State))
		}
	}
	for i, u := range used {
		if !u && !focused {
			res.problems = append(res.problems, fmt.Sprintf("skip entry %q matches no spec: remove it", skips[i].spec))
		}
	}
	sort.Slice(res.failed, func(i, j int) bool { return res.failed[i].name < res.failed[j].name })
	sort.Slice(res.skipped, func(i, j int) bool { return res.skipped[i].name < res.skipped[j].name })
	return res
}

// idSet collects the ids of the pods and containers accel-cri reports
// through GetContainerEvents.
type idSet struct {
	mu  sync.Mutex
	ids map[string]bool
}

func (s *idSet) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for id := range s.ids {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// watchIDs subscribes to accel-cri's container events for the rest of the
// test, so the cgroups of every pod and container critest made can be
// checked at the end.
func watchIDs(t *testing.T, a *framework.AccelCRI) *idSet {
	t.Helper()
	s := &idSet{ids: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan *runtimeapi.ContainerEventResponse, 1024)
	subscribed := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = a.Runtime.GetContainerEvents(ctx, events, func(runtimeapi.RuntimeService_GetContainerEventsClient) { close(subscribed) })
	}()
	go func() {
		// Reads until the stream has ended, so the client never blocks
		// sending an event nobody takes.
		for {
			select {
			case <-done:
				return
			case ev := <-events:
				s.mu.Lock()
				s.ids[ev.GetContainerId()] = true
				if id := ev.GetPodSandboxStatus().GetId(); id != "" {
					s.ids[id] = true
				}
				s.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-subscribed:
	case <-done:
		t.Fatal("GetContainerEvents ended before it started")
	case <-time.After(30 * time.Second):
		t.Fatal("GetContainerEvents: no stream after 30s")
	}
	return s
}

// cgroupParent is the cgroup below which accel-cri (cgroupfs driver) puts
// pods and containers that have no cgroup parent, as critest's have.
const cgroupParent = "/" + cgroups.Prefix

// existingCgroupParents lists the hierarchies' cgroupParent directories
// that exist.
func existingCgroupParents() map[string]bool {
	out := map[string]bool{}
	for _, dir := range cgroups.Local().Dirs(cgroupParent) {
		if _, err := os.Stat(dir); err == nil {
			out[dir] = true
		}
	}
	return out
}

// removeLeftovers removes the pods critest left, then checks that no cgroup
// of a pod or container it made is left (/accel-cri/<id>), removing any it
// finds, and removes /accel-cri where the run made it (runc makes parents
// and never removes them) unless something else uses it now.
func removeLeftovers(t *testing.T, a *framework.AccelCRI, ids *idSet, parentsBefore map[string]bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pods, err := a.Runtime.ListPodSandbox(ctx, nil)
	if err != nil {
		t.Errorf("list pods after critest: %v", err)
	}
	if len(pods) > 0 {
		var names []string
		for _, p := range pods {
			names = append(names, p.GetMetadata().GetName())
		}
		t.Logf("critest left %d pods, removing them: %s", len(pods), strings.Join(names, ", "))
		if err := framework.RemovePods(ctx, a.Runtime, t.Errorf); err != nil {
			t.Errorf("remove pods: %v", err)
		}
	}
	ctrs, err := a.Runtime.ListContainers(ctx, nil)
	if err != nil || len(ctrs) > 0 {
		t.Errorf("containers left after every pod was removed: %d, %v", len(ctrs), err)
	}
	for _, parent := range cgroups.Local().Dirs(cgroupParent) {
		for _, id := range ids.list() {
			dir := filepath.Join(parent, id)
			if _, err := os.Stat(dir); err != nil {
				continue
			}
			t.Errorf("cgroup %s is left after its pod or container was removed", dir)
			cgroups.KillProcs(dir)
			_ = cgroups.RemoveTree(dir)
		}
		if !parentsBefore[parent] {
			_ = syscall.Rmdir(parent) // fails while in use: then it is not ours alone
		}
	}
}

// mountPoints returns the mount points of the test's mount namespace.
func mountPoints(t *testing.T) map[string]bool {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 4 {
			out[unescapeMount(f[4])] = true
		}
	}
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(byte(c))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountLeftovers lazily unmounts what critest left mounted below dir (a
// spec that fails between its mount and its cleanup leaves its mounts).
func unmountLeftovers(t *testing.T, dir string) {
	var left []string
	for m := range mountPoints(t) {
		if strings.HasPrefix(m, dir+"/") {
			left = append(left, m)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(left)))
	for _, m := range left {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			t.Errorf("unmount %s: %v", m, err)
		}
	}
	if len(left) > 0 {
		t.Logf("unmounted %d mounts critest left below %s", len(left), dir)
	}
}

// keepReports copies critest's reports and output into dir.
func keepReports(t *testing.T, dir, work string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Errorf("CRITEST_REPORT_DIR: %v", err)
		return
	}
	for _, n := range []string{"report.json", "junit.xml", "critest.log"} {
		if err := copyFile(filepath.Join(work, n), filepath.Join(dir, n)); err != nil {
			t.Errorf("CRITEST_REPORT_DIR: %v", err)
		}
	}
	t.Logf("critest reports in %s", dir)
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

// tail returns about the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
