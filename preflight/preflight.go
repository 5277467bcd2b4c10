package preflight

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/accel-cri/accel-cri/config"
	"github.com/accel-cri/accel-cri/devices"
	"github.com/accel-cri/accel-cri/internal/version"
)

// Status is the outcome of one item.
type Status string

// Statuses, as printed. FAIL is for items accel-cri cannot run without;
// what only limits some pods is WARN.
const (
	OK   Status = "OK"
	Warn Status = "WARN"
	Fail Status = "FAIL"
)

// Result is one line of the report.
type Result struct {
	Status Status
	Item   string
	Detail string
	// Fix says what to do; set for every non-OK result.
	Fix string
}

func ok(item, format string, args ...any) Result {
	return Result{Status: OK, Item: item, Detail: fmt.Sprintf(format, args...)}
}

func warn(item, fix, format string, args ...any) Result {
	return Result{Status: Warn, Item: item, Detail: fmt.Sprintf(format, args...), Fix: fix}
}

func fail(item, fix, format string, args ...any) Result {
	return Result{Status: Fail, Item: item, Detail: fmt.Sprintf(format, args...), Fix: fix}
}

// Option configures Run.
type Option func(*checker)

// WithHost sets the node the checks read. Default OSHost.
func WithHost(h Host) Option { return func(c *checker) { c.host = h } }

// WithDiscover sets the device discovery (the one `accel-cri devices`
// uses, with the [devices] table's roots). Default: no device check.
func WithDiscover(f func() (devices.Inventory, error)) Option {
	return func(c *checker) { c.discover = f }
}

// WithExpectedContainerd sets the containerd version accel-cri is built
// against. Default version.Containerd().
func WithExpectedContainerd(v string) Option { return func(c *checker) { c.expected = v } }

type checker struct {
	cfg      config.Config
	host     Host
	discover func() (devices.Inventory, error)
	expected string
}

// check is one item (or one per runtime handler).
type check func(ctx context.Context, c *checker) []Result

// checks run in this order, the order of the report.
var checks = []check{
	checkRoot,
	checkContainerd,
	checkRuntimes,
	checkCNI,
	checkIPForward,
	checkCgroups,
	checkOverlay,
	checkSeccomp,
	checkUserNamespaces,
	checkOOMScoreAdj,
	checkKVM,
	checkDevices,
	checkNRI,
	checkSignaturePolicy,
	checkCRIU,
}

// Run checks the node for cfg.
func Run(ctx context.Context, cfg config.Config, opts ...Option) []Result {
	c := &checker{cfg: cfg, host: OSHost{}, expected: version.Containerd()}
	for _, o := range opts {
		o(c)
	}
	var out []Result
	for _, ch := range checks {
		out = append(out, ch(ctx, c)...)
	}
	return out
}

// Print writes one line per result, a "fix:" line under each non-OK one
// and a summary. It reports whether any item failed.
func Print(w io.Writer, results []Result) (failed bool) {
	counts := map[Status]int{}
	for _, r := range results {
		counts[r.Status]++
		fmt.Fprintf(w, "[%s] %s: %s\n", r.Status, r.Item, r.Detail)
		if r.Status != OK {
			fmt.Fprintf(w, "  fix: %s\n", r.Fix)
		}
	}
	verdict := "this node can run accel-cri"
	switch {
	case counts[Fail] > 0:
		verdict = "this node cannot run accel-cri until the FAIL items are fixed"
	case counts[Warn] > 0:
		verdict = "this node can run accel-cri; WARN items limit some pods"
	}
	fmt.Fprintf(w, "%d ok, %d warnings, %d failed: %s\n", counts[OK], counts[Warn], counts[Fail], verdict)
	return counts[Fail] > 0
}

// firstLine is the first non-empty line of b, trimmed.
func firstLine(b []byte) string {
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}
