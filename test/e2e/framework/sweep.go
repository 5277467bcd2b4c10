package framework

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/accel-cri/accel-cri/internal/cgroups"
	"github.com/accel-cri/accel-cri/internal/testutil/hostnet"
)

// instanceName matches the network name an AccelCRI instance uses; its temp
// root is /tmp/acri-e2e-<digits>.
var instanceName = regexp.MustCompile(`^acri-([0-9]+)$`)

// bridgeAliasPrefix starts the alias of an instance's CNI bridge, followed
// by the instance's temp root.
const bridgeAliasPrefix = "accel-cri-e2e "

// SweepStale removes what e2e runs that were killed (and so never ran their
// cleanup) left behind. An instance's temp root whose owner process is gone
// goes with everything the instance started: its accel-cri, containerd and
// shims, its containers (their cgroups), mounts, nat rules and CNI cache.
// Then cgroups, CNI cache entries and nat rules named after an instance
// whose temp root is gone are removed, and bridges whose alias marks them
// as such an instance's. Nothing of a live run, and nothing not named or
// marked by this suite, is touched. Call it from TestMain.
func SweepStale(t hostnet.T) {
	roots, _ := filepath.Glob(filepath.Join(os.TempDir(), "acri-e2e-*"))
	for _, dir := range roots {
		if ownerGone(dir) {
			reapInstance(t, dir)
		}
	}
	owned := func(name string) bool {
		m := instanceName.FindStringSubmatch(name)
		if m == nil {
			return true // not ours: leave it
		}
		_, err := os.Stat(filepath.Join(os.TempDir(), "acri-e2e-"+m[1]))
		return err == nil
	}
	stale := map[string]bool{}
	for _, base := range cgroups.Local().MountPoints() {
		entries, _ := os.ReadDir(base)
		for _, e := range entries {
			if e.IsDir() && !owned(e.Name()) {
				stale[e.Name()] = true
			}
		}
	}
	results, _ := filepath.Glob("/var/lib/cni/results/acri-*-eth0")
	for _, r := range results {
		if f := strings.SplitN(filepath.Base(r), "-", 3); len(f) == 3 && !owned(f[0]+"-"+f[1]) {
			stale[f[0]+"-"+f[1]] = true
		}
	}
	links, _ := os.ReadDir("/sys/class/net")
	for _, l := range links {
		// An instance's bridge carries its temp root in its alias
		// (WriteCNIConfig); a link without that mark is never removed.
		alias, _ := os.ReadFile(filepath.Join("/sys/class/net", l.Name(), "ifalias"))
		dir, ok := strings.CutPrefix(strings.TrimSpace(string(alias)), bridgeAliasPrefix)
		if !ok || !strings.HasPrefix(filepath.Base(dir), "acri-e2e-") {
			continue
		}
		if _, err := os.Stat(dir); os.IsNotExist(err) || ownerGone(dir) {
			exec.Command("ip", "link", "del", l.Name()).Run()
		}
	}
	for name := range stale {
		a := &AccelCRI{NetworkName: name}
		a.killCgroupProcs()
		a.removeCgroups()
		hostnet.RemoveNetworkRules(t, "iptables", name)
		hostnet.RemoveCNICache(name)
	}
	bins, _ := filepath.Glob(filepath.Join(os.TempDir(), "acri-bin-*"))
	kubelets, _ := filepath.Glob(filepath.Join(os.TempDir(), "acri-kubelet-*"))
	for _, b := range append(bins, kubelets...) {
		if ownerGone(b) {
			os.RemoveAll(b)
		}
	}
	// test/e2e/cluster's dirs: etcd, the control plane and the kubelet name
	// theirs in their command lines; the kubelet's root dir is a mount.
	clusters, _ := filepath.Glob(filepath.Join(os.TempDir(), "acri-cluster-*"))
	for _, dir := range clusters {
		if ownerGone(dir) {
			t.Logf("sweep: removing %s, left by a killed run", dir)
			killProcsWithArg(dir + "/")
			unmountUnder(dir)
			if err := os.RemoveAll(dir); err != nil {
				t.Errorf("sweep: remove %s: %v", dir, err)
			}
		}
	}
}

// ownerGone reports whether dir was marked by a process that no longer
// runs: gone, or a zombie (killed, not yet reaped by its parent, which for
// make cluster's supervisor is init). A dir without a mark is being set
// up, or was made before marks existed: it is left alone.
func ownerGone(dir string) bool {
	owner, err := os.ReadFile(filepath.Join(dir, "owner"))
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(owner)))
	if err != nil || pid <= 0 {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if os.IsNotExist(err) {
		return true
	}
	// "pid (comm) S ...": the state follows the last ')'.
	if i := strings.LastIndexByte(string(stat), ')'); err == nil && i >= 0 {
		f := strings.Fields(string(stat[i+1:]))
		return len(f) > 0 && (f[0] == "Z" || f[0] == "X")
	}
	return false
}

// reapInstance does for an AccelCRI instance whose test process died what
// its cleanup would have done. Every process it started names dir in its
// command line (accel-cri's config, containerd's and the shims' sockets).
func reapInstance(t hostnet.T, dir string) {
	a := &AccelCRI{Dir: dir, State: filepath.Join(dir, "state"), NetworkName: "acri-" + strings.TrimPrefix(filepath.Base(dir), "acri-e2e-")}
	t.Logf("sweep: removing %s, left by a killed run", dir)
	// dir + "/": /tmp/acri-e2e-12 must not match a live /tmp/acri-e2e-123.
	killProcsWithArg(dir + "/")
	a.killCgroupProcs()
	unmountUnder(dir)
	a.removeCgroups()
	hostnet.RemoveNetworkRules(t, "iptables", a.NetworkName)
	hostnet.RemoveCNICache(a.NetworkName)
	if err := os.RemoveAll(dir); err != nil {
		t.Errorf("sweep: remove %s: %v", dir, err)
	}
}

// MarkOwned records the test process as the owner of dir, so SweepStale
// removes it only once that process is gone.
func MarkOwned(t hostnet.T, dir string) {
	if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		t.Fatalf("mark %s: %v", dir, err)
	}
}

// StderrT reports to standard error; for code that runs outside a test.
type StderrT struct{}

func (StderrT) Helper()                           {}
func (StderrT) Errorf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
func (StderrT) Logf(format string, args ...any)   { fmt.Fprintf(os.Stderr, format+"\n", args...) }
func (StderrT) Fatal(args ...any)                 { fmt.Fprintln(os.Stderr, args...); os.Exit(1) }
func (StderrT) Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}
