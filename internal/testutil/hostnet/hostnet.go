// Package hostnet holds test helpers that keep host-wide network state
// clean when tests run CNI plugins: a cross-process lock, sysctl restore,
// and removal of portmap's shared nat chains that a test run created.
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

// RestoreSysctl puts a sysctl back to its value at the start of the test.
func RestoreSysctl(t T, path string) (restore func()) {
	t.Helper()
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return func() {
		now, err := os.ReadFile(path)
		if err == nil && string(now) == string(before) {
			return
		}
		t.Logf("%s changed during the test (%q -> %q): restoring", path, before, now)
		if err := os.WriteFile(path, before, 0o644); err != nil {
			t.Errorf("restore %s: %v", path, err)
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

// RemovePortmapChainsIfNew removes portmap's shared nat chains at the end of
// the test when they did not exist before it and no pod uses them any more
// (another test run may have made them or may be using them).
func RemovePortmapChainsIfNew(t T, ipt string) (cleanup func()) {
	t.Helper()
	existed := false
	for _, r := range NatRules(t, ipt) {
		if r == ":CNI-HOSTPORT-DNAT - [0:0]" || strings.HasPrefix(r, ":CNI-HOSTPORT-DNAT ") {
			existed = true
		}
	}
	if existed {
		return func() {}
	}
	return func() {
		present := false
		for _, r := range NatRules(t, ipt) {
			if strings.HasPrefix(r, ":CNI-HOSTPORT-DNAT ") {
				present = true
			}
			if ChainOf(r) == "CNI-HOSTPORT-DNAT" {
				return // in use by some pod
			}
		}
		if !present {
			return
		}
		drop := map[string]bool{}
		for _, c := range portmapSharedChains {
			drop[c] = true
		}
		ScrubNat(t, ipt, func(string) bool { return false }, drop)
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
