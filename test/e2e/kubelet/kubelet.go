// Package kubelet runs a real kubelet (standalone, static pods, no API
// server) on accel-cri, and on containerd's own CRI for comparison.
package kubelet

import (
	"bytes"
	"cmp"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	podresourcesapi "k8s.io/kubelet/pkg/apis/podresources/v1"

	"github.com/accel-cri/accel-cri/internal/cgroups"
	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// KubeletVersion is the kubelet hack/build-kubelet.sh builds (hack/tools/go.mod).
const KubeletVersion = "v1.37.2"

// NodeName is the kubelet's --hostname-override; static pods are named <name>-<NodeName>.
const NodeName = "acri-node"

// kernelTunables are the sysctls kubelet's container manager writes at start.
// It runs in a mount namespace of its own where each is a bind mount of a
// file holding the host's value, so the host's values never change.
var kernelTunables = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
}

// kubeletBinary returns the cached kubelet, building it when missing.
func kubeletBinary(t testing.TB, moduleRoot string) string {
	t.Helper()
	if p := os.Getenv("KUBELET_BIN"); p != "" {
		return p
	}
	start := time.Now()
	cmd := exec.Command(filepath.Join(moduleRoot, "hack", "build-kubelet.sh"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hack/build-kubelet.sh: %v\n%s", err, stderr.String())
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Logf("built kubelet %s in %s", KubeletVersion, d.Round(time.Second))
	}
	return strings.TrimSpace(string(out))
}

// Kubelet is one kubelet process with its directories under Dir.
type Kubelet struct {
	t                               testing.TB
	Bin, Dir, RootDir, ManifestDir  string
	PodLogsDir, ConfigPath, LogPath string
	DevicePluginDir                 string
	Endpoint, CgroupRoot            string
	Port, HealthzPort               int
	client                          *http.Client
	cmd                             *exec.Cmd
	exited                          chan struct{}
	sysctlBefore                    map[string]string
	extraConfig                     string
	drained                         func() bool
	// NodeName is the kubelet's --hostname-override; Address the address
	// it serves on.
	NodeName, Address string
	kubeconfig        string
	ca                *framework.CA
}

// KubeletOptions configures NewKubelet.
type KubeletOptions struct {
	Bin string
	// Dir holds everything of this kubelet (removed by its owner).
	Dir string
	// Endpoint is the CRI socket, "unix://...".
	Endpoint string
	// CgroupRoot is kubelet's cgroupRoot (created here in every hierarchy).
	CgroupRoot string
	// ExtraConfig is appended to the KubeletConfiguration YAML.
	ExtraConfig string
	// Drained, when set, reports whether the runtime has no ready pod
	// sandbox left; cleanup waits for it before stopping the kubelet.
	Drained func() bool
	// NodeName is --hostname-override ("": NodeName).
	NodeName string
	// CA signs the kubelet's serving certificate and the certificate its
	// /pods client presents, and is its clientCAFile (nil: a CA of its own).
	CA *framework.CA
	// Kubeconfig, when set, registers the kubelet as a node of the API
	// server it names, as a kubeadm node is: webhook authentication and
	// authorization, Address as its node IP. Its root dir is then a shared
	// mount, so that the volumes it mounts there (service account tokens,
	// secrets, config maps) reach the runtime, which runs in the host's
	// mount namespace; cleanup unmounts what is left there.
	Kubeconfig string
	// Address is the address the kubelet serves its API on, and its node
	// IP with Kubeconfig, where it may not be a loopback one: use one of a
	// local-only interface, such as the test's CNI bridge ("": 127.0.0.1).
	Address string
}

// NewKubelet writes the config, TLS material and sysctl files and starts
// the kubelet; cleanup stops it (only this pid), checks the host's sysctls
// and restores any that changed.
func NewKubelet(t testing.TB, o KubeletOptions) *Kubelet {
	t.Helper()
	k := &Kubelet{
		t: t, Bin: o.Bin, Dir: o.Dir, Endpoint: o.Endpoint, CgroupRoot: o.CgroupRoot,
		RootDir:     filepath.Join(o.Dir, "root"),
		ManifestDir: filepath.Join(o.Dir, "manifests"),
		PodLogsDir:  filepath.Join(o.Dir, "pod-logs"),
		ConfigPath:  filepath.Join(o.Dir, "kubelet.yaml"),
		LogPath:     filepath.Join(o.Dir, "kubelet.log"),
		// Not under the root dir: a bind mount there would be a mount below
		// a directory kubelet cleans up.
		DevicePluginDir: filepath.Join(o.Dir, "device-plugins"),
		extraConfig:     o.ExtraConfig,
		drained:         o.Drained,
		NodeName:        cmp.Or(o.NodeName, NodeName),
		Address:         cmp.Or(o.Address, "127.0.0.1"),
		kubeconfig:      o.Kubeconfig,
		ca:              o.CA,
	}
	for _, d := range []string{k.RootDir, k.DevicePluginDir, k.ManifestDir, k.PodLogsDir, filepath.Join(o.Dir, "sysctl"), filepath.Join(o.Dir, "pki")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	k.sysctlBefore = map[string]string{}
	for _, s := range kernelTunables {
		b, err := os.ReadFile("/proc/sys/" + s)
		if err != nil {
			t.Fatal(err)
		}
		k.sysctlBefore[s] = string(b)
		if err := os.WriteFile(k.sysctlFile(s), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(k.checkSysctls)
	makeCgroupRoot(t, o.CgroupRoot)
	k.writeTLS(t)
	var err error
	if k.Port, err = freePort(); err != nil {
		t.Fatal(err)
	}
	if k.HealthzPort, err = freePort(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k.ConfigPath, []byte(k.config()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.cleanup)
	k.Start(t)
	return k
}

func (k *Kubelet) sysctlFile(s string) string {
	return filepath.Join(k.Dir, "sysctl", strings.ReplaceAll(s, "/", "."))
}

// SysctlWritten returns what kubelet wrote to its private copy of s.
func (k *Kubelet) SysctlWritten(s string) string {
	b, _ := os.ReadFile(k.sysctlFile(s))
	return strings.TrimSpace(string(b))
}

func (k *Kubelet) config() string {
	// Standalone: only client certificates of the kubelet's CA, every
	// request allowed. A node: bearer tokens and the API server's
	// authorization too, as kubeadm configures it.
	auth := "webhook:\n    enabled: false"
	authz := "mode: AlwaysAllow"
	if k.kubeconfig != "" {
		auth = "webhook:\n    enabled: true\n    cacheTTL: 0s"
		authz = "mode: Webhook\n  webhook:\n    cacheAuthorizedTTL: 0s\n    cacheUnauthorizedTTL: 0s"
	}
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
staticPodPath: %q
fileCheckFrequency: 2s
syncFrequency: 5s
address: %s
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
tlsCertFile: %q
tlsPrivateKeyFile: %q
authentication:
  anonymous:
    enabled: false
  %s
  x509:
    clientCAFile: %q
authorization:
  %s
containerRuntimeEndpoint: %q
imageServiceEndpoint: %q
failCgroupV1: false
failSwapOn: false
cgroupDriver: cgroupfs
cgroupRoot: %q
cgroupsPerQOS: true
makeIPTablesUtilChains: false
protectKernelDefaults: false
podLogsDir: %q
containerLogMaxSize: 16Ki
containerLogMaxFiles: 3
containerLogMonitorInterval: 3s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%%"
  nodefs.inodesFree: "1%%"
  imagefs.available: "1%%"
  imagefs.inodesFree: "1%%"
localStorageCapacityIsolation: false
%s`, k.ManifestDir, k.Address, k.Port, k.HealthzPort,
		filepath.Join(k.Dir, "pki", "server.crt"), filepath.Join(k.Dir, "pki", "server.key"),
		auth, filepath.Join(k.Dir, "pki", "ca.crt"), authz, k.Endpoint, k.Endpoint, k.CgroupRoot, k.PodLogsDir, k.extraConfig)
}

// Start starts the kubelet in a private mount namespace whose kernel
// tunables are files, and waits for /healthz.
func (k *Kubelet) Start(t testing.TB) {
	t.Helper()
	var script strings.Builder
	script.WriteString("set -e\n")
	propagation := "private"
	if k.kubeconfig != "" {
		// The root dir is a shared bind mount (shareRootDir) whose peer
		// stays in the host's namespace: the new namespace is a copy with
		// propagation unchanged, and the mounts holding what the script
		// mounts below are made private first.
		k.shareRootDir(t)
		propagation = "unchanged"
		for _, p := range append([]string{"/", "/var/lib", "/proc", "/proc/sys"}, prefixed("/proc/sys/", kernelTunables)...) {
			fmt.Fprintf(&script, "mount --make-private \"$(findmnt -no TARGET -T %s)\"\n", p)
		}
	}
	for _, s := range kernelTunables {
		fmt.Fprintf(&script, "mount --bind %q /proc/sys/%s\n", k.sysctlFile(s), s)
	}
	// kubelet's device manager serves /var/lib/kubelet/device-plugins
	// whatever --root-dir is: give it a tmpfs /var/lib with that directory
	// a bind mount of DevicePluginDir, which the device plugin uses.
	fmt.Fprintf(&script, "mount -t tmpfs -o mode=0755 tmpfs /var/lib\nmkdir -p /var/lib/kubelet/device-plugins\nmount --bind %q /var/lib/kubelet/device-plugins\n", k.DevicePluginDir)
	// The root dir on a shared mount, as /var/lib/kubelet is on a systemd
	// host: in this private namespace kubelet would bind-mount it onto
	// itself at start (hostutil.DoMakeRShared) while its pod-resources
	// server makes its socket there, and that socket's rename across the
	// new mount fails (EXDEV: "Failed to create listener for
	// podResources endpoint", kubelet exits; CI, 1 run in 8).
	// (With a kubeconfig it already is one, shared with the host: above.)
	if k.kubeconfig == "" {
		fmt.Fprintf(&script, "mount --bind %q %q\nmount --make-rshared %q\n", k.RootDir, k.RootDir, k.RootDir)
	}
	script.WriteString(`exec "$@"`)
	args := []string{"-m", "--propagation", propagation, "sh", "-c", script.String(), "kubelet",
		k.Bin, "--config", k.ConfigPath, "--root-dir", k.RootDir, "--cert-dir", filepath.Join(k.Dir, "pki"),
		"--hostname-override", k.NodeName, "--v=2"}
	if k.kubeconfig != "" {
		args = append(args, "--kubeconfig", k.kubeconfig, "--node-ip", k.Address)
	}
	logf, err := os.OpenFile(k.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unshare", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Kill the kubelet if the test binary dies without running cleanups.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	exited := make(chan struct{})
	k.cmd, k.exited = cmd, exited
	go func() {
		cmd.Wait()
		logf.Close()
		close(exited)
	}()
	deadline := time.Now().Add(90 * time.Second)
	c := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-exited:
			t.Fatalf("kubelet exited: %v\n%s", cmd.ProcessState, k.LogTail(40))
		default:
		}
		// /healthz has its own listener, which kubelet opens before its
		// authenticated API port: wait for both.
		resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", k.HealthzPort))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				if _, err = k.Pods(); err == nil {
					k.checkPrivateMounts(t)
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("kubelet /healthz and /pods not answering after 90s: %v\n%s", err, k.LogTail(40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkPrivateMounts fails the test unless the running kubelet's /var/lib
// is a tmpfs of its own and its kernel tunables are its copies: what it
// writes there never reaches the host, so the host's /var/lib/kubelet and
// sysctls are not this test's to check or put back.
func (k *Kubelet) checkPrivateMounts(t testing.TB) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", k.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("kubelet's mounts: %v", err)
	}
	want := map[string]string{"/var/lib": "tmpfs"}
	for _, s := range kernelTunables {
		want["/proc/sys/"+s] = ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		// id parent major:minor root mountpoint options ... - fstype source
		f := strings.Fields(l)
		sep := slices.Index(f, "-")
		if len(f) < 5 || sep < 0 || sep+1 >= len(f) {
			continue
		}
		if fstype, ok := want[f[4]]; ok && (fstype == "" || fstype == f[sep+1]) {
			delete(want, f[4])
		}
	}
	if len(want) > 0 {
		t.Fatalf("kubelet (pid %d) runs without private mounts of %v", k.cmd.Process.Pid, slices.Sorted(maps.Keys(want)))
	}
}

// Running reports whether the kubelet process is alive.
func (k *Kubelet) Running() bool {
	select {
	case <-k.exited:
		return false
	default:
		return true
	}
}

// Stop ends the kubelet: SIGTERM, then SIGKILL after 15s.
func (k *Kubelet) Stop() {
	if k.cmd == nil || !k.Running() {
		return
	}
	_ = k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.exited:
	case <-time.After(15 * time.Second):
		_ = k.cmd.Process.Kill()
		<-k.exited
	}
}

// cleanup removes the static manifests first and gives a live kubelet a
// moment to remove its pods, then stops it; the runtime's own cleanup
// removes what is left.
func (k *Kubelet) cleanup() {
	t := k.t
	if t.Failed() {
		t.Logf("kubelet log tail (%s):\n%s", k.LogPath, k.LogTail(60))
	}
	entries, _ := os.ReadDir(k.ManifestDir)
	for _, e := range entries {
		os.Remove(filepath.Join(k.ManifestDir, e.Name()))
	}
	if k.cmd != nil && k.Running() {
		// /pods drops a pod before it is stopped: wait for the runtime to
		// have no ready sandbox, so kubelet itself tears the pods down.
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			pods, err := k.Pods()
			if err == nil && len(pods) == 0 && (k.drained == nil || k.drained()) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	k.Stop()
	if k.kubeconfig != "" {
		// Volumes the kubelet left mounted, then the shared root dir itself.
		framework.UnmountUnder(k.RootDir)
	}
}

// shareRootDir makes the root dir a shared bind mount of itself (once), so
// that a mount namespace copied from this one with unchanged propagation
// shares what is mounted below it with the host's.
func (k *Kubelet) shareRootDir(t testing.TB) {
	t.Helper()
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 6 && f[4] == k.RootDir && strings.Contains(l, " shared:") {
			return
		}
	}
	for _, args := range [][]string{{"--bind", k.RootDir, k.RootDir}, {"--make-shared", k.RootDir}} {
		if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
			t.Fatalf("mount %v: %v: %s", args, err, out)
		}
	}
}

func prefixed(prefix string, s []string) []string {
	out := make([]string, len(s))
	for i, e := range s {
		out[i] = prefix + e
	}
	return out
}

// checkSysctls reports a host kernel tunable that changed during the test
// and leaves it: this kubelet writes its private copies (its /proc/sys
// entries are bind mounts in its own mount namespace, set up before it
// runs), so a change of the host's value is another process's.
func (k *Kubelet) checkSysctls() {
	for s, before := range k.sysctlBefore {
		now, err := os.ReadFile("/proc/sys/" + s)
		if err != nil || string(now) == before {
			continue
		}
		k.t.Logf("host sysctl %s changed %q -> %q during the test, not by its kubelet (it wrote %q to its copy): left as it is",
			s, strings.TrimSpace(before), strings.TrimSpace(string(now)), strings.TrimSpace(k.SysctlWritten(s)))
	}
}

// LogTail returns the last n lines of the kubelet's log.
func (k *Kubelet) LogTail(n int) string {
	b, _ := os.ReadFile(k.LogPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// Pod is the part of a v1.Pod the tests read from kubelet's /pods.
type Pod struct {
	Metadata struct {
		Name, Namespace, UID string
	}
	Status struct {
		Phase, PodIP      string
		Conditions        []struct{ Type, Status string }
		ContainerStatuses []ContainerStatus
	}
}

// ContainerStatus is the part of a v1.ContainerStatus the tests read.
type ContainerStatus struct {
	Name, ContainerID string
	Ready             bool
	RestartCount      int32
	State             struct {
		Running    *struct{ StartedAt string }
		Terminated *struct {
			ExitCode int32
			Reason   string
		}
		Waiting *struct{ Reason, Message string }
	}
}

// Ready reports the pod's Ready condition.
func (p *Pod) Ready() bool {
	for _, c := range p.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	return false
}

// AllRunning reports whether n containers are reported, all running.
func (p *Pod) AllRunning(n int) bool {
	if len(p.Status.ContainerStatuses) != n {
		return false
	}
	for _, c := range p.Status.ContainerStatuses {
		if c.State.Running == nil {
			return false
		}
	}
	return true
}

// Container returns the named container's status.
func (p *Pod) Container(name string) *ContainerStatus {
	for i := range p.Status.ContainerStatuses {
		if p.Status.ContainerStatuses[i].Name == name {
			return &p.Status.ContainerStatuses[i]
		}
	}
	return nil
}

// Pods reads kubelet's /pods over TLS with a client certificate (anonymous
// auth is off).
func (k *Kubelet) Pods() ([]Pod, error) {
	resp, err := k.client.Get(fmt.Sprintf("https://%s/pods", net.JoinHostPort(k.Address, strconv.Itoa(k.Port))))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /pods: %s", resp.Status)
	}
	var list struct{ Items []Pod }
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return nil, err
	}
	return list.Items, nil
}

// Get returns the static pod name (without the node suffix), or nil.
func (k *Kubelet) Get(name string) *Pod {
	pods, err := k.Pods()
	if err != nil {
		return nil
	}
	for i := range pods {
		if pods[i].Metadata.Name == name+"-"+k.NodeName {
			return &pods[i]
		}
	}
	return nil
}

// WaitPod polls /pods until cond holds for the pod (nil when absent).
func (k *Kubelet) WaitPod(t testing.TB, name string, timeout time.Duration, what string, cond func(*Pod) bool) *Pod {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		p := k.Get(name)
		if cond(p) {
			return p
		}
		if time.Now().After(deadline) {
			b, _ := json.MarshalIndent(p, "", " ")
			t.Fatalf("pod %s: not %s after %s; last seen:\n%s\nkubelet log tail:\n%s", name, what, timeout, b, k.LogTail(30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WriteManifest writes a static pod manifest atomically (the file source
// must not see a half-written file) and returns when it was written.
func (k *Kubelet) WriteManifest(t testing.TB, name, yaml string) time.Time {
	t.Helper()
	tmp := filepath.Join(k.Dir, name+".yaml.tmp")
	if err := os.WriteFile(tmp, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(k.ManifestDir, name+".yaml")); err != nil {
		t.Fatal(err)
	}
	return time.Now()
}

// RemoveManifest deletes a static pod manifest.
func (k *Kubelet) RemoveManifest(t testing.TB, name string) {
	t.Helper()
	if err := os.Remove(filepath.Join(k.ManifestDir, name+".yaml")); err != nil {
		t.Fatal(err)
	}
}

// writeTLS writes the CA (the given one or a new one), a serving cert for
// 127.0.0.1 and makes the HTTP client that trusts the CA and presents a
// client cert of it (system:masters, which the API server's authorization
// allows when the kubelet asks it).
func (k *Kubelet) writeTLS(t testing.TB) {
	t.Helper()
	pki := filepath.Join(k.Dir, "pki")
	ca := k.ca
	if ca == nil {
		ca = framework.NewCA(t, "acri-e2e-ca")
	}
	srv := ca.Issue(t, framework.CertSpec{CommonName: k.NodeName,
		Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPs: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(k.Address)}})
	cli := ca.Issue(t, framework.CertSpec{CommonName: "acri-e2e", Organization: []string{"system:masters"},
		Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	framework.WriteFile(t, filepath.Join(pki, "ca.crt"), ca.CertPEM)
	srv.WriteFiles(t, pki, "server")
	k.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: ca.TLSConfig(t, cli)}}
}

// makeCgroupRoot creates root in every cgroup v1 hierarchy (cpuset with
// its parent's cpus and mems), as kubelet wants its cgroupRoot to exist.
func makeCgroupRoot(t testing.TB, root string) {
	t.Helper()
	for _, base := range cgroups.Local().MountPoints() {
		dir := filepath.Join(base, root)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if b, err := os.ReadFile(filepath.Join(base, f)); err == nil {
				cur, _ := os.ReadFile(filepath.Join(dir, f))
				if strings.TrimSpace(string(cur)) == "" {
					if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
						t.Fatalf("%s: %v", filepath.Join(dir, f), err)
					}
				}
			}
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// PodResources connects to kubelet's pod-resources API (what the device
// manager allocated, and what it can allocate).
func (k *Kubelet) PodResources(t testing.TB) podresourcesapi.PodResourcesListerClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+filepath.Join(k.RootDir, "pod-resources", "kubelet.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return podresourcesapi.NewPodResourcesListerClient(conn)
}

// NoReadySandbox returns a Drained func over a CRI runtime.
func NoReadySandbox(rs internalapi.RuntimeService) func() bool {
	return func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		pods, err := rs.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}})
		return err == nil && len(pods) == 0
	}
}
