package podnet

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	gocni "github.com/containerd/go-cni"
	cnins "github.com/containernetworking/plugins/pkg/ns"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/internal/testutil/hostnet"
)

// These tests run the real CNI plugins of the host (Debian's
// containernetworking-plugins in /usr/lib/cni) as root. Everything they make
// has a random name (bridge "acn<hex>", subnet 10.<200-249>.<y>.0/24, pod IDs,
// network names) and is removed in t.Cleanup, also when a test fails.

const pnTestCNIBinDir = "/usr/lib/cni"

func pnRequireCNI(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root (network namespaces, bridges, iptables)")
	}
	for _, p := range []string{"bridge", "host-local", "portmap", "loopback"} {
		if _, err := os.Stat(filepath.Join(pnTestCNIBinDir, p)); err != nil {
			t.Fatalf("CNI plugin %s not installed: %v", p, err)
		}
	}
	for _, b := range []string{"ip", "iptables-save", "iptables-restore"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s not installed", b)
		}
	}
}

func pnRandHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func pnRandInt(t *testing.T, max int64) int64 {
	t.Helper()
	v, err := rand.Int(rand.Reader, big.NewInt(max))
	if err != nil {
		t.Fatal(err)
	}
	return v.Int64()
}

type pnTestCNIOpts struct {
	dualStack bool
	// failPlugin is a plugin put after bridge whose ADD fails, after
	// bridge allocated an IP.
	failPlugin string
}

// pnTestCNI is one CNI network made for a test.
type pnTestCNI struct {
	net     *Network
	name    string // network name
	bridge  string
	subnet  *net.IPNet
	subnet6 *net.IPNet
	dataDir string // host-local dataDir
}

// allocated lists the IPs host-local has on disk for this network.
func (c *pnTestCNI) allocated(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(c.dataDir, c.name))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var ips []string
	for _, e := range entries {
		if net.ParseIP(e.Name()) != nil {
			ips = append(ips, e.Name())
		}
	}
	return ips
}

func pnNewTestCNI(t *testing.T, o pnTestCNIOpts) *pnTestCNI {
	t.Helper()
	pnRequireCNI(t)
	t.Cleanup(hostnet.LockHostNetwork(t))
	tmp := t.TempDir()
	c := &pnTestCNI{
		name:    "acn-test-" + pnRandHex(t, 4),
		bridge:  "acn" + pnRandHex(t, 4),
		dataDir: filepath.Join(tmp, "ipam"),
	}
	_, c.subnet, _ = net.ParseCIDR(fmt.Sprintf("10.%d.%d.0/24", 200+pnRandInt(t, 50), pnRandInt(t, 256)))
	ranges := fmt.Sprintf(`[[{"subnet": %q}]`, c.subnet)
	if o.dualStack {
		_, c.subnet6, _ = net.ParseCIDR(fmt.Sprintf("fd00:%x::/64", 1+pnRandInt(t, 0xfffe)))
		ranges += fmt.Sprintf(`, [{"subnet": %q}]`, c.subnet6)
	}
	ranges += "]"

	// The test makes the bridge with the gateway address itself instead of
	// "isGateway": true, because with isGateway the bridge plugin turns on
	// net.ipv4.ip_forward (and IPv6 forwarding) for the whole host, which a
	// test cannot safely turn off again. The bridge plugin takes the
	// existing bridge; host-local keeps .1 (the gateway) out of its pool.
	t.Cleanup(func() {
		if err := exec.Command("ip", "link", "show", "dev", c.bridge).Run(); err != nil {
			return // never made, or already gone
		}
		if out, err := exec.Command("ip", "link", "del", "dev", c.bridge).CombinedOutput(); err != nil {
			t.Errorf("delete bridge %s: %v: %s", c.bridge, err, out)
		}
	})
	gw := func(n *net.IPNet) string {
		ip := append(net.IP(nil), n.IP...)
		ip[len(ip)-1] |= 1
		ones, _ := n.Mask.Size()
		return fmt.Sprintf("%s/%d", ip, ones)
	}
	cmds := [][]string{
		{"ip", "link", "add", "name", c.bridge, "type", "bridge"},
		{"ip", "addr", "add", gw(c.subnet), "dev", c.bridge},
	}
	if o.dualStack {
		cmds = append(cmds, []string{"ip", "-6", "addr", "add", gw(c.subnet6), "dev", c.bridge, "nodad"})
	}
	cmds = append(cmds, []string{"ip", "link", "set", "dev", c.bridge, "up"})
	for _, cmd := range cmds {
		if out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", cmd, err, out)
		}
	}
	plugins := []string{
		fmt.Sprintf(`{"type": "bridge", "bridge": %q, "isGateway": false, "ipMasq": false, "hairpinMode": true,
		  "ipam": {"type": "host-local", "ranges": %s, "dataDir": %q}}`, c.bridge, ranges, c.dataDir),
	}
	if o.failPlugin != "" {
		plugins = append(plugins, o.failPlugin)
	}
	plugins = append(plugins, `{"type": "portmap", "capabilities": {"portMappings": true}}`)
	conflist := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": %q, "plugins": [%s]}`, c.name, strings.Join(plugins, ",\n"))

	// Host-wide state other runtimes share: a change during the test is
	// theirs (this config never switches forwarding on), reported and left.
	t.Cleanup(hostnet.ReportSysctlChange(t, "/proc/sys/net/ipv4/ip_forward"))
	t.Cleanup(hostnet.ReportSysctlChange(t, "/proc/sys/net/ipv6/conf/all/forwarding"))
	t.Cleanup(hostnet.ReportPortmapChains(t, "iptables"))
	t.Cleanup(hostnet.ReportPortmapChains(t, "ip6tables"))

	confDir := filepath.Join(tmp, "net.d")
	if err := os.MkdirAll(confDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(confDir, "10-test.conflist"), []byte(conflist), 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := New(confDir, []string{pnTestCNIBinDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	waitReady(t, n, true)
	c.net = n
	return c
}

// pnMentions reports whether text names the IP (not as a prefix of another).
func pnMentions(text, ip string) bool {
	return regexp.MustCompile(`(^|[^0-9a-fA-F.:])` + regexp.QuoteMeta(ip) + `([^0-9a-fA-F]|$)`).MatchString(text)
}

// pnTrackPod makes sure the pod's network is gone at the end of the test
// (CNI DEL again, then iptables rules, chains and the CNI cache files that
// name the pod), whatever the test did. ips is read at cleanup time.
func pnTrackPod(t *testing.T, c *pnTestCNI, podID, nsPath string, cfg *runtimeapi.PodSandboxConfig, ips *[]string) {
	t.Helper()
	_, err := os.Stat("/var/lib/cni")
	cniDirExisted := err == nil
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.net.TeardownPod(ctx, podID, nsPath, cfg); err != nil {
			t.Logf("cleanup teardown of pod %s: %v", podID, err)
		}
		for _, ipt := range []string{"iptables", "ip6tables"} {
			if _, err := exec.LookPath(ipt + "-save"); err != nil {
				continue
			}
			match := func(r string) bool {
				if strings.Contains(r, podID) {
					return true
				}
				for _, ip := range *ips {
					if pnMentions(r, ip) {
						return true
					}
				}
				return false
			}
			drop := map[string]bool{}
			for _, r := range hostnet.NatRules(t, ipt) {
				if match(r) {
					if tg := hostnet.TargetOf(r); strings.HasPrefix(tg, "CNI-DN-") {
						drop[tg] = true
					}
					if ch := hostnet.ChainOf(r); strings.HasPrefix(ch, "CNI-DN-") {
						drop[ch] = true
					}
				}
			}
			hostnet.ScrubNat(t, ipt, match, drop)
		}
		cache, _ := filepath.Glob("/var/lib/cni/results/*-" + podID + "-*")
		for _, f := range cache {
			os.Remove(f)
		}
		// The cache dirs, when this run made them and left them empty (a
		// dir that was there before is another runtime's too).
		if !cniDirExisted {
			os.Remove("/var/lib/cni/results")
			os.Remove("/var/lib/cni")
		}
	})
}

func pnNewTestNetNS(t *testing.T) string {
	t.Helper()
	path, err := NewNetNS(filepath.Join(t.TempDir(), "netns"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := RemoveNetNS(path); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return path
}

func pnTestPodConfig(name string, pm ...*runtimeapi.PortMapping) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "acn-test", Uid: "uid-" + name},
		Hostname:     name,
		PortMappings: pm,
		Annotations:  map[string]string{"example.com/a": "b"},
	}
}

func pnFreePort(t *testing.T) int32 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return int32(l.Addr().(*net.TCPAddr).Port)
}

// pnInNetNS runs f on a thread in the network namespace at path.
func pnInNetNS(t *testing.T, path string, f func() error) {
	t.Helper()
	ns, err := cnins.GetNS(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := ns.Do(func(cnins.NetNS) error { return f() }); err != nil {
		t.Fatal(err)
	}
}

// pnServeInNetNS listens on addr inside the namespace and answers every
// connection with greeting. The socket stays in the namespace it was made in.
func pnServeInNetNS(t *testing.T, path, addr, greeting string) {
	t.Helper()
	var ln net.Listener
	pnInNetNS(t, path, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, greeting+"\n")
			c.Close()
		}
	}()
}

// pnDialGreeting connects to addr from the host and reads one line.
func pnDialGreeting(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

func TestPodNetSetupTeardown(t *testing.T) {
	c := pnNewTestCNI(t, pnTestCNIOpts{})
	nsPath := pnNewTestNetNS(t)
	podID := pnRandHex(t, 32)
	hostPort, anyHostPort := pnFreePort(t), pnFreePort(t)
	cfg := pnTestPodConfig("web-"+pnRandHex(t, 3),
		&runtimeapi.PortMapping{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 8080, HostPort: hostPort, HostIp: "127.0.0.1"},
		&runtimeapi.PortMapping{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 8080, HostPort: anyHostPort}, // all host addresses
		&runtimeapi.PortMapping{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 9090},                        // no host port: not published
	)
	var ips []string
	pnTrackPod(t, c, podID, nsPath, cfg, &ips)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	pn, err := c.net.SetupPod(ctx, podID, nsPath, cfg)
	if err != nil {
		t.Fatalf("SetupPod: %v", err)
	}
	ips = append([]string{pn.IP}, pn.AdditionalIPs...)
	podIP := net.ParseIP(pn.IP)
	if podIP == nil || podIP.To4() == nil || !c.subnet.Contains(podIP) {
		t.Fatalf("pod IP %q not an IPv4 address in %s", pn.IP, c.subnet)
	}
	if len(pn.AdditionalIPs) != 0 {
		t.Errorf("additional IPs %v on a single-stack network", pn.AdditionalIPs)
	}
	if got := c.allocated(t); !reflect.DeepEqual(got, []string{pn.IP}) {
		t.Errorf("host-local allocations = %v, want [%s]", got, pn.IP)
	}

	// eth0 carries the IP, lo is up.
	pnInNetNS(t, nsPath, func() error {
		eth0, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		addrs, err := eth0.Addrs()
		if err != nil {
			return err
		}
		found := false
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.Equal(podIP) {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("eth0 addresses %v lack %s", addrs, podIP)
		}
		lo, err := net.InterfaceByName("lo")
		if err != nil {
			return err
		}
		if lo.Flags&net.FlagUp == 0 {
			return fmt.Errorf("lo is down: %v", lo.Flags)
		}
		return nil
	})

	// The pod is reachable on its IP, and the host port on 127.0.0.1
	// forwards to it.
	greeting := "hello from " + podID[:8]
	pnServeInNetNS(t, nsPath, net.JoinHostPort(pn.IP, "8080"), greeting)
	if got, err := pnDialGreeting(net.JoinHostPort(pn.IP, "8080")); err != nil || got != greeting {
		t.Errorf("pod IP: got %q, %v; want %q", got, err, greeting)
	}
	hostAddr := net.JoinHostPort("127.0.0.1", fmt.Sprint(hostPort))
	if got, err := pnDialGreeting(hostAddr); err != nil || got != greeting {
		t.Errorf("hostPort %s: got %q, %v; want %q", hostAddr, got, err, greeting)
	}
	anyAddr := net.JoinHostPort("127.0.0.1", fmt.Sprint(anyHostPort))
	if got, err := pnDialGreeting(anyAddr); err != nil || got != greeting {
		t.Errorf("hostPort without host IP, via %s: got %q, %v; want %q", anyAddr, got, err, greeting)
	}
	// portmap itself lets 127.0.0.0/8 be routed to the bridge (the DNAT of
	// a localhost host port needs it) and masquerades such connections.
	if v, err := os.ReadFile("/proc/sys/net/ipv4/conf/" + c.bridge + "/route_localnet"); err != nil || strings.TrimSpace(string(v)) != "1" {
		t.Errorf("route_localnet on %s = %q, %v; want 1 (set by portmap)", c.bridge, v, err)
	}
	if rules := strings.Join(hostnet.NatRules(t, "iptables"), "\n"); !strings.Contains(rules, podID) {
		t.Errorf("no portmap rule names the pod after SetupPod:\n%s", rules)
	}

	// Teardown releases the IP and the port mapping.
	if err := c.net.TeardownPod(ctx, podID, nsPath, cfg); err != nil {
		t.Fatalf("TeardownPod: %v", err)
	}
	if got := c.allocated(t); len(got) != 0 {
		t.Errorf("host-local allocations after teardown: %v", got)
	}
	pnAssertNoIptablesFor(t, podID, ips)
	for _, a := range []string{hostAddr, anyAddr} {
		if _, err := pnDialGreeting(a); err == nil {
			t.Errorf("hostPort %s still answers after teardown", a)
		}
	}
	if cache, _ := filepath.Glob("/var/lib/cni/results/*-" + podID + "-*"); len(cache) != 0 {
		t.Errorf("CNI cache files left: %v", cache)
	}

	// Teardown again, and after the namespace is gone: both succeed.
	if err := c.net.TeardownPod(ctx, podID, nsPath, cfg); err != nil {
		t.Errorf("second TeardownPod: %v", err)
	}
	if err := RemoveNetNS(nsPath); err != nil {
		t.Fatalf("RemoveNetNS: %v", err)
	}
	if err := c.net.TeardownPod(ctx, podID, nsPath, cfg); err != nil {
		t.Errorf("TeardownPod after RemoveNetNS: %v", err)
	}
	pnAssertNoIptablesFor(t, podID, ips)
}

// pnAssertNoIptablesFor checks that no iptables/ip6tables rule (any table)
// names the pod's ID or IPs.
func pnAssertNoIptablesFor(t *testing.T, podID string, ips []string) {
	t.Helper()
	for _, ipt := range []string{"iptables-save", "ip6tables-save"} {
		out, err := exec.Command(ipt).Output()
		if err != nil {
			t.Errorf("%s: %v", ipt, err)
			continue
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, podID) {
				t.Errorf("%s still names pod %s: %s", ipt, podID, line)
			}
			for _, ip := range ips {
				if pnMentions(line, ip) {
					t.Errorf("%s still names pod IP %s: %s", ipt, ip, line)
				}
			}
		}
	}
}

func TestPodNetDualStack(t *testing.T) {
	c := pnNewTestCNI(t, pnTestCNIOpts{dualStack: true})
	nsPath := pnNewTestNetNS(t)
	podID := pnRandHex(t, 32)
	cfg := pnTestPodConfig("dual-" + pnRandHex(t, 3))
	var ips []string
	pnTrackPod(t, c, podID, nsPath, cfg, &ips)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	pn, err := c.net.SetupPod(ctx, podID, nsPath, cfg)
	if err != nil {
		t.Fatalf("SetupPod: %v", err)
	}
	ips = append([]string{pn.IP}, pn.AdditionalIPs...)
	v4, v6 := net.ParseIP(pn.IP), net.IP(nil)
	if len(pn.AdditionalIPs) == 1 {
		v6 = net.ParseIP(pn.AdditionalIPs[0])
	}
	if v4 == nil || v4.To4() == nil || !c.subnet.Contains(v4) {
		t.Errorf("primary IP %q: want IPv4 in %s", pn.IP, c.subnet)
	}
	if v6 == nil || v6.To4() != nil || !c.subnet6.Contains(v6) {
		t.Errorf("additional IPs %v: want one IPv6 in %s", pn.AdditionalIPs, c.subnet6)
	}
	if got := c.allocated(t); len(got) != 2 {
		t.Errorf("host-local allocations = %v, want 2", got)
	}
	greeting := "v4 of " + podID[:8]
	pnServeInNetNS(t, nsPath, net.JoinHostPort(pn.IP, "8080"), greeting)
	if got, err := pnDialGreeting(net.JoinHostPort(pn.IP, "8080")); err != nil || got != greeting {
		t.Errorf("pod IPv4: got %q, %v", got, err)
	}
	if err := c.net.TeardownPod(ctx, podID, nsPath, cfg); err != nil {
		t.Fatalf("TeardownPod: %v", err)
	}
	if got := c.allocated(t); len(got) != 0 {
		t.Errorf("host-local allocations after teardown: %v", got)
	}
	pnAssertNoIptablesFor(t, podID, ips)
}

func TestPodNetSetupFailureUndoes(t *testing.T) {
	tests := []struct {
		name, plugin, wantErr string
	}{
		// ADD and DEL of this one fail: the list DEL fails, DEL plugin by
		// plugin still releases the IP.
		{"missing plugin", `{"type": "acn-nonexistent-plugin"}`, "acn-nonexistent-plugin"},
		// ADD fails, DEL works: the list DEL undoes it.
		{"failing ADD", `{"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.acn_no_such_sysctl": "1"}}`, "acn_no_such_sysctl"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := pnNewTestCNI(t, pnTestCNIOpts{failPlugin: tc.plugin})
			nsPath := pnNewTestNetNS(t)
			podID := pnRandHex(t, 32)
			cfg := pnTestPodConfig("broken-"+pnRandHex(t, 3),
				&runtimeapi.PortMapping{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 8080, HostPort: pnFreePort(t), HostIp: "127.0.0.1"})
			var ips []string
			pnTrackPod(t, c, podID, nsPath, cfg, &ips)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()

			_, err := c.net.SetupPod(ctx, podID, nsPath, cfg)
			if err == nil {
				t.Fatal("SetupPod succeeded with a failing plugin in the list")
			}
			t.Logf("SetupPod error (expected): %v", err)
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error does not name the failure %q: %v", tc.wantErr, err)
			}
			if got := c.allocated(t); len(got) != 0 {
				t.Errorf("host-local allocations left after the failed setup: %v", got)
			}
			pnInNetNS(t, nsPath, func() error {
				if _, err := net.InterfaceByName("eth0"); err == nil {
					return errors.New("eth0 left in the pod netns after the failed setup")
				}
				return nil
			})
			pnAssertNoIptablesFor(t, podID, nil)
			if cache, _ := filepath.Glob("/var/lib/cni/results/*-" + podID + "-*"); len(cache) != 0 {
				t.Errorf("CNI cache files left: %v", cache)
			}
		})
	}
}

func TestPodNetNotReady(t *testing.T) {
	pnRequireCNI(t)
	n, err := New(filepath.Join(t.TempDir(), "net.d"), []string{pnTestCNIBinDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	cfg := pnTestPodConfig("nonet")
	ctx := context.Background()
	if _, err := n.SetupPod(ctx, pnRandHex(t, 32), "/nonexistent/netns", cfg); !errors.Is(err, ErrNetworkNotReady) {
		t.Errorf("SetupPod without config: err = %v, want ErrNetworkNotReady", err)
	}
	if err := n.TeardownPod(ctx, pnRandHex(t, 32), "/nonexistent/netns", cfg); !errors.Is(err, ErrNetworkNotReady) {
		t.Errorf("TeardownPod without config: err = %v, want ErrNetworkNotReady", err)
	}
}

func TestPodNetTeardownWithoutSetup(t *testing.T) {
	c := pnNewTestCNI(t, pnTestCNIOpts{})
	nsPath := pnNewTestNetNS(t)
	podID := pnRandHex(t, 32)
	cfg := pnTestPodConfig("never-"+pnRandHex(t, 3),
		&runtimeapi.PortMapping{Protocol: runtimeapi.Protocol_UDP, ContainerPort: 53, HostPort: pnFreePort(t)})
	var ips []string
	pnTrackPod(t, c, podID, nsPath, cfg, &ips)
	ctx := context.Background()
	if err := c.net.TeardownPod(ctx, podID, nsPath, cfg); err != nil {
		t.Errorf("TeardownPod of a pod that was never set up: %v", err)
	}
	if err := c.net.TeardownPod(ctx, podID, filepath.Join(t.TempDir(), "gone"), cfg); err != nil {
		t.Errorf("TeardownPod with a netns path that never existed: %v", err)
	}
	if err := c.net.TeardownPod(ctx, podID, "", cfg); err != nil {
		t.Errorf("TeardownPod with no netns path: %v", err)
	}
}

func TestPodNetCNIArgs(t *testing.T) {
	base := func() *runtimeapi.PodSandboxConfig {
		return &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "ns", Uid: "u"},
		}
	}
	tests := []struct {
		name    string
		mod     func(*runtimeapi.PodSandboxConfig)
		strict  bool
		wantErr error
		check   func(*testing.T, cniArgs)
	}{
		{
			name: "labels and empty annotations",
			check: func(t *testing.T, a cniArgs) {
				want := map[string]string{"K8S_POD_NAMESPACE": "ns", "K8S_POD_NAME": "p", "K8S_POD_INFRA_CONTAINER_ID": "id1", "K8S_POD_UID": "u", "IgnoreUnknown": "1"}
				if !reflect.DeepEqual(a.labels, want) {
					t.Errorf("labels = %v", a.labels)
				}
				if got := a.caps[cniPodAnnotationsCapability]; !reflect.DeepEqual(got, map[string]string{}) {
					t.Errorf("pod annotations capability = %#v", got)
				}
				for _, k := range []string{"portMappings", "bandwidth", "dns", "cgroupPath"} {
					if _, ok := a.caps[k]; ok {
						t.Errorf("capability %s set without input", k)
					}
				}
			},
		},
		{
			name: "port mappings: only host ports, protocol lowercased",
			mod: func(c *runtimeapi.PodSandboxConfig) {
				c.PortMappings = []*runtimeapi.PortMapping{
					{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 80, HostPort: 8080, HostIp: "127.0.0.1"},
					{Protocol: runtimeapi.Protocol_UDP, ContainerPort: 53},
					{Protocol: runtimeapi.Protocol_UDP, ContainerPort: 53, HostPort: 5353},
					{Protocol: runtimeapi.Protocol_SCTP, ContainerPort: 9, HostPort: 9999, HostIp: "::1"},
				}
			},
			check: func(t *testing.T, a cniArgs) {
				want := []gocni.PortMapping{
					{HostPort: 8080, ContainerPort: 80, Protocol: "tcp", HostIP: "127.0.0.1"},
					{HostPort: 5353, ContainerPort: 53, Protocol: "udp"},
					{HostPort: 9999, ContainerPort: 9, Protocol: "sctp", HostIP: "::1"},
				}
				if got := a.caps["portMappings"]; !reflect.DeepEqual(got, want) {
					t.Errorf("portMappings = %#v", got)
				}
			},
		},
		{
			name: "dns, cgroup parent, annotations",
			mod: func(c *runtimeapi.PodSandboxConfig) {
				c.DnsConfig = &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"ns.svc.cluster.local"}, Options: []string{"ndots:5"}}
				c.Linux = &runtimeapi.LinuxPodSandboxConfig{CgroupParent: "/kubepods/pod-u"}
				c.Annotations = map[string]string{"x": "y"}
			},
			check: func(t *testing.T, a cniArgs) {
				want := gocni.DNS{Servers: []string{"10.96.0.10"}, Searches: []string{"ns.svc.cluster.local"}, Options: []string{"ndots:5"}}
				if got := a.caps["dns"]; !reflect.DeepEqual(got, want) {
					t.Errorf("dns = %#v", got)
				}
				if got := a.caps["cgroupPath"]; got != "/kubepods/pod-u" {
					t.Errorf("cgroupPath = %#v", got)
				}
				if got := a.caps[cniPodAnnotationsCapability]; !reflect.DeepEqual(got, map[string]string{"x": "y"}) {
					t.Errorf("annotations = %#v", got)
				}
			},
		},
		{
			name:   "bandwidth",
			strict: true,
			mod: func(c *runtimeapi.PodSandboxConfig) {
				c.Annotations = map[string]string{annotationIngressBandwidth: "10M", annotationEgressBandwidth: "1Gi"}
			},
			check: func(t *testing.T, a cniArgs) {
				want := gocni.BandWidth{IngressRate: 10_000_000, IngressBurst: bandwidthBurst, EgressRate: 1 << 30, EgressBurst: bandwidthBurst}
				if got := a.caps["bandwidth"]; !reflect.DeepEqual(got, want) {
					t.Errorf("bandwidth = %#v", got)
				}
			},
		},
		{
			name:   "egress only",
			strict: true,
			mod: func(c *runtimeapi.PodSandboxConfig) {
				c.Annotations = map[string]string{annotationEgressBandwidth: "500k"}
			},
			check: func(t *testing.T, a cniArgs) {
				want := gocni.BandWidth{EgressRate: 500_000, EgressBurst: bandwidthBurst}
				if got := a.caps["bandwidth"]; !reflect.DeepEqual(got, want) {
					t.Errorf("bandwidth = %#v", got)
				}
			},
		},
		{
			name:   "bandwidth not a quantity",
			strict: true,
			mod: func(c *runtimeapi.PodSandboxConfig) {
				c.Annotations = map[string]string{annotationIngressBandwidth: "fast"}
			},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name:   "bandwidth too small",
			strict: true,
			mod: func(c *runtimeapi.PodSandboxConfig) {
				c.Annotations = map[string]string{annotationEgressBandwidth: "10"}
			},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name:   "bandwidth too large",
			strict: true,
			mod: func(c *runtimeapi.PodSandboxConfig) {
				c.Annotations = map[string]string{annotationEgressBandwidth: "2P"}
			},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name: "bad bandwidth is left out for teardown",
			mod: func(c *runtimeapi.PodSandboxConfig) {
				c.Annotations = map[string]string{annotationIngressBandwidth: "fast"}
			},
			check: func(t *testing.T, a cniArgs) {
				if _, ok := a.caps["bandwidth"]; ok {
					t.Error("bandwidth capability set from a bad annotation")
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			if tc.mod != nil {
				tc.mod(cfg)
			}
			a, err := podCNIArgs("id1", cfg, tc.strict)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, a)
			rt := a.runtimeConf("id1", "/ns", "eth0")
			if rt.ContainerID != "id1" || rt.NetNS != "/ns" || rt.IfName != "eth0" || len(rt.Args) != len(a.labels) {
				t.Errorf("runtimeConf = %+v", rt)
			}
		})
	}
}

func TestPodNetIPSelection(t *testing.T) {
	ipc := func(ips ...string) *gocni.Result {
		cfg := &gocni.Config{}
		for _, s := range ips {
			cfg.IPConfigs = append(cfg.IPConfigs, &gocni.IPConfig{IP: net.ParseIP(s)})
		}
		return &gocni.Result{Interfaces: map[string]*gocni.Config{"eth0": cfg}}
	}
	tests := []struct {
		name   string
		result *gocni.Result
		want   IPs
		err    bool
	}{
		{"v4", ipc("10.1.0.5"), IPs{IP: "10.1.0.5"}, false},
		{"v6 only", ipc("fd00::5"), IPs{IP: "fd00::5"}, false},
		{"v4 first", ipc("10.1.0.5", "fd00::5"), IPs{IP: "10.1.0.5", AdditionalIPs: []string{"fd00::5"}}, false},
		{"v6 first", ipc("fd00::5", "10.1.0.5"), IPs{IP: "10.1.0.5", AdditionalIPs: []string{"fd00::5"}}, false},
		{"three", ipc("fd00::5", "fd01::5", "10.1.0.5"), IPs{IP: "10.1.0.5", AdditionalIPs: []string{"fd00::5", "fd01::5"}}, false},
		{"no ips", ipc(), IPs{}, true},
		{"no eth0", &gocni.Result{Interfaces: map[string]*gocni.Config{"lo": {}}}, IPs{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := podIPs(tc.result)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
