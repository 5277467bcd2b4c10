// Package hostnet holds test helpers for tests that run CNI plugins on a
// host other runtimes share: a cross-process lock, removal of what a test's
// own network made (its nat rules and CNI cache, named after it), and
// reports of host-wide state that changed during a test but is not the
// test's (forwarding sysctls, portmap's shared chains). A test removes only
// what it made; whatever else it finds it reports and leaves alone.
package hostnet

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// T is the part of testing.TB these helpers use, so TestMain code can pass
// a plain logger too.
type T interface {
	Helper()
	Errorf(format string, args ...any)
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
}

// cniBinDir is locked (flock) to serialise CNI use across test processes.
const cniBinDir = "/usr/lib/cni"

// LockHostNetwork serializes the tests that use CNI plugins across test
// processes (two go test runs at once): portmap's shared nat chains and the
// snapshot of host sysctls are host-wide. The lock is a flock on the CNI
// plugin directory, so no lock file is made or left; it is released after
// all other cleanups of the test.
func LockHostNetwork(t T) (release func()) {
	t.Helper()
	f, err := os.Open(cniBinDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("lock %s: %v", cniBinDir, err)
	}
	return func() { f.Close() } // closing the only fd releases the flock
}

// ReportSysctlChange reports, at the end of the test, a sysctl whose value
// changed during it, and leaves it. The tests' CNI configs never switch
// forwarding on (the bridge plugin runs with isGateway false), so a change
// is another runtime's on the same host: putting the old value back would
// break its pods.
func ReportSysctlChange(t T, path string) (report func()) {
	t.Helper()
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return func() {
		now, err := os.ReadFile(path)
		if err == nil && string(now) != string(before) {
			t.Logf("%s changed during the test (%q -> %q), not by it: left as it is", path, strings.TrimSpace(string(before)), strings.TrimSpace(string(now)))
		}
	}
}

// NatRules returns the nat table of iptables or ip6tables in -S form.
func NatRules(t T, ipt string) []string {
	t.Helper()
	out, err := exec.Command(ipt+"-save", "-t", "nat").Output()
	if err != nil {
		t.Errorf("%s-save: %v", ipt, err)
		return nil
	}
	return strings.Split(string(out), "\n")
}

// ChainOf and TargetOf read "-A CHAIN ... -j TARGET ...".
func ChainOf(rule string) string {
	f := strings.Fields(rule)
	if len(f) < 2 || f[0] != "-A" {
		return ""
	}
	return f[1]
}

func TargetOf(rule string) string {
	f := strings.Fields(rule)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "-j" {
			return f[i+1]
		}
	}
	return ""
}

// ScrubNat deletes, in one iptables-restore transaction, the nat rules
// matching match and the chains in drop (their rules and every jump to
// them).
func ScrubNat(t T, ipt string, match func(rule string) bool, drop map[string]bool) {
	t.Helper()
	rules := NatRules(t, ipt)
	var script strings.Builder
	script.WriteString("*nat\n")
	for c := range drop {
		fmt.Fprintf(&script, ":%s - [0:0]\n", c) // with --noflush: flushes the chain
	}
	n := 0
	for _, r := range rules {
		if ChainOf(r) == "" || drop[ChainOf(r)] {
			continue
		}
		if match(r) || drop[TargetOf(r)] {
			script.WriteString("-D" + strings.TrimPrefix(r, "-A") + "\n")
			n++
		}
	}
	for c := range drop {
		fmt.Fprintf(&script, "-X %s\n", c)
	}
	script.WriteString("COMMIT\n")
	if n == 0 && len(drop) == 0 {
		return
	}
	cmd := exec.Command(ipt+"-restore", "--noflush")
	cmd.Stdin = strings.NewReader(script.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("%s-restore cleanup: %v: %s\n%s", ipt, err, out, script.String())
	}
}

var portmapSharedChains = []string{"CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ"}

// ReportPortmapChains reports, at the end of the test, portmap's shared nat
// chains when they appeared during it. Every CNI network on the host with
// port mappings shares them (another runtime's may be using or about to use
// them), so they are left in place; the test's own rules in them, which
// name its network, go with RemoveNetworkRules.
func ReportPortmapChains(t T, ipt string) (report func()) {
	t.Helper()
	present := func() bool {
		for _, r := range NatRules(t, ipt) {
			if strings.HasPrefix(r, ":CNI-HOSTPORT-DNAT ") {
				return true
			}
		}
		return false
	}
	if present() {
		return func() {}
	}
	return func() {
		if present() {
			t.Logf("%s: portmap's shared chains %v appeared during the test; shared by every CNI network on the host: left in place", ipt, portmapSharedChains)
		}
	}
}

// RemoveNetworkRules deletes the nat rules portmap made for one CNI network
// (their comment names it) and the per-pod chains they jump to. It cleans
// up after a test whose pods could not be torn down.
func RemoveNetworkRules(t T, ipt, network string) {
	t.Helper()
	needle := fmt.Sprintf("name: \\\"%s\\\"", network)
	drop := map[string]bool{}
	for _, r := range NatRules(t, ipt) {
		if strings.Contains(r, needle) {
			if tg := TargetOf(r); strings.HasPrefix(tg, "CNI-") && !slices.Contains(portmapSharedChains, tg) {
				drop[tg] = true
			}
		}
	}
	ScrubNat(t, ipt, func(r string) bool { return strings.Contains(r, needle) }, drop)
}

// cniResults is where libcni caches ADD results (go-cni's default).
const cniResults = "/var/lib/cni/results"

// RemoveCNICache deletes libcni's cached results for one network's pods,
// and their loopback entries, which a successful DEL would have removed.
func RemoveCNICache(network string) {
	matches, _ := filepath.Glob(filepath.Join(cniResults, network+"-*-eth0"))
	for _, m := range matches {
		id := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(m), network+"-"), "-eth0")
		os.Remove(m)
		os.Remove(filepath.Join(cniResults, "cni-loopback-"+id+"-lo"))
	}
}
