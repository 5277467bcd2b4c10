// Package cluster runs a one-node Kubernetes cluster on accel-cri for tests:
// etcd, kube-apiserver, kube-controller-manager, kube-scheduler and a
// kubelet registered as a node, built from the Go module proxy by
// hack/build-k8s.sh at the versions of hack/tools/go.mod, with accel-cri and
// its managed containerd as the node's runtime.
//
// Everything listens on loopback only, on ports of its own, and lives under
// the test's own temp dirs: a PKI made with crypto/x509 (cluster, etcd and
// front-proxy CAs, serving and client certificates, the service-account
// key pair), kubeconfigs, etcd's data. Flags are those of a kubeadm node:
// client-certificate authentication everywhere, Node and RBAC
// authorization, the default admission chain plus NodeRestriction. The
// kubelet runs as test/e2e/kubelet runs it (a private mount namespace, its
// own root dir), registered with a client certificate of
// system:node:<NodeName>. Cleanup deletes the workloads, waits for the
// kubelet to have torn their pods down, and stops every process, also when
// the test fails.
//
// It must not be imported by anything but tests and hack/cluster (make
// cluster, which keeps the cluster running for a person): it starts daemons.
package cluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/accel-cri/accel-cri/devices/devicetest"
	"github.com/accel-cri/accel-cri/test/e2e/framework"
	"github.com/accel-cri/accel-cri/test/e2e/kubelet"
)

// Version is the Kubernetes release hack/build-k8s.sh builds.
const Version = kubelet.KubeletVersion

// NodeName is the one node's name.
const NodeName = "acri-cluster-node"

const (
	serviceCIDR         = "10.96.0.0/12"
	kubernetesServiceIP = "10.96.0.1"
)

// Options configures Start.
type Options struct {
	// AccelCRIConfig is extra TOML for accel-cri's config.
	AccelCRIConfig string
	// KubeletConfig is appended to the KubeletConfiguration YAML.
	KubeletConfig string
	// DevicesConfig is extra TOML for accel-cri's [devices] table
	// ("replicas = { intel-gpu = 2 }").
	DevicesConfig string
	// GPUs are the node's fake GPUs (nil: GPU alone).
	GPUs []devicetest.DRMGPU
	// DRA makes accel-cri the node's DRA driver instead of its device
	// plugin: [devices.dra] with a kubeconfig of the node's own identity
	// (system:node:<NodeName>, which the Node authorizer and
	// NodeRestriction let publish the node's ResourceSlices and read its
	// pods' claims) and the kubelet's plugins and plugins_registry dirs;
	// device_plugin off, so that extended resources are DRA's (the
	// DeviceClasses' extendedResourceName). deploy/dra's DeviceClasses and
	// RBAC (the nodes may write their claims' device status) are applied
	// once the API server is up.
	DRA bool
}

// Cluster is a running one-node cluster.
type Cluster struct {
	// Dir holds the PKI, kubeconfigs, etcd's data and the logs.
	Dir string
	// Server is the API server's URL; AdminKubeconfig is kubernetes-admin's.
	Server, AdminKubeconfig string
	// Config and Client are kubernetes-admin's client-go config and clientset.
	Config *rest.Config
	Client kubernetes.Interface
	// Bins are the component binaries by name ("kubectl", "etcd", ...).
	Bins     map[string]string
	AccelCRI *framework.AccelCRI
	Kubelet  *kubelet.Kubelet
	// Devices is the node's fake hardware: one Intel GPU (GPU), which
	// accel-cri's device plugin offers as accel-cri.io/intel-gpu, or
	// Options.GPUs.
	Devices *devicetest.Host
	// DRAPluginsDir is accel-cri's kubelet_plugins_dir with Options.DRA
	// (<kubelet root>/plugins: <driver>/dra.sock, <driver>/checkpoint.json).
	DRAPluginsDir string
	Registry      *framework.Registry
	Images        framework.TestImages
	// SignaturePolicyDir is accel-cri's signature_policy_dir
	// (<Dir>/policy.d): empty when the cluster starts, and no default
	// signature_policy is set, so no namespace has a signature policy
	// until a case writes <dir>/<namespace>.json (docs/security.md).
	SignaturePolicyDir string

	pki                    *pki
	etcd, apiserver, cm, s *proc
}

// Binaries returns the cached control plane, kubectl and kubelet, building
// what is missing (hack/build-k8s.sh; minutes when cold).
func Binaries(t testing.TB) map[string]string {
	t.Helper()
	start := time.Now()
	cmd := exec.Command("bash", filepath.Join(framework.ModuleRoot(t), "hack", "build-k8s.sh"),
		"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kubelet")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hack/build-k8s.sh: %v\n%s", err, stderr.String())
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Logf("built Kubernetes %s components in %s:\n%s", Version, d.Round(time.Second), stderr.String())
	}
	bins := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if name, path, ok := strings.Cut(sc.Text(), " "); ok {
			bins[name] = path
		}
	}
	for _, c := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kubelet"} {
		if bins[c] == "" {
			t.Fatalf("hack/build-k8s.sh printed no %s:\n%s", c, out)
		}
	}
	return bins
}

func port(t testing.TB) string {
	t.Helper()
	p, err := framework.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(p)
}

// Start brings the cluster up and returns once the node is Ready.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	c := &Cluster{Bins: Binaries(t)}
	dir, err := os.MkdirTemp("", "acri-cluster-")
	if err != nil {
		t.Fatal(err)
	}
	framework.MarkOwned(t, dir)
	c.Dir = dir
	// Runs last: every process is gone by then.
	t.Cleanup(func() {
		framework.UnmountUnder(dir)
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	logs := filepath.Join(dir, "logs")
	for _, d := range []string{logs, filepath.Join(dir, "etcd-data")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	c.pki = newPKI(t, filepath.Join(dir, "pki"))
	p := c.pki.path

	etcdPort, peerPort, apiPort := port(t), port(t), port(t)
	c.etcd = startProc(t, logs, "etcd", c.Bins["etcd"],
		"--name=acri", "--data-dir="+filepath.Join(dir, "etcd-data"),
		"--listen-client-urls=https://127.0.0.1:"+etcdPort, "--advertise-client-urls=https://127.0.0.1:"+etcdPort,
		"--listen-peer-urls=https://127.0.0.1:"+peerPort, "--initial-advertise-peer-urls=https://127.0.0.1:"+peerPort,
		"--initial-cluster=acri=https://127.0.0.1:"+peerPort, "--initial-cluster-state=new",
		"--cert-file="+p("etcd/server.crt"), "--key-file="+p("etcd/server.key"),
		"--trusted-ca-file="+p("etcd/ca.crt"), "--client-cert-auth=true",
		"--peer-cert-file="+p("etcd/peer.crt"), "--peer-key-file="+p("etcd/peer.key"),
		"--peer-trusted-ca-file="+p("etcd/ca.crt"), "--peer-client-cert-auth=true",
		"--snapshot-count=10000")
	c.etcd.waitHTTPS(t, "https://127.0.0.1:"+etcdPort+"/health", c.pki.etcdCA.TLSConfig(t, c.pki.etcdClient), `{"health":"true"`, 60*time.Second)

	c.Server = "https://127.0.0.1:" + apiPort
	c.apiserver = startProc(t, logs, "kube-apiserver", c.Bins["kube-apiserver"],
		"--advertise-address=127.0.0.1", "--bind-address=127.0.0.1", "--secure-port="+apiPort,
		"--allow-privileged=true", "--authorization-mode=Node,RBAC",
		"--client-ca-file="+p("ca.crt"), "--enable-admission-plugins=NodeRestriction",
		"--enable-bootstrap-token-auth=true",
		"--etcd-servers=https://127.0.0.1:"+etcdPort, "--etcd-cafile="+p("etcd/ca.crt"),
		"--etcd-certfile="+p("apiserver-etcd-client.crt"), "--etcd-keyfile="+p("apiserver-etcd-client.key"),
		"--kubelet-client-certificate="+p("apiserver-kubelet-client.crt"), "--kubelet-client-key="+p("apiserver-kubelet-client.key"),
		"--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
		"--proxy-client-cert-file="+p("front-proxy-client.crt"), "--proxy-client-key-file="+p("front-proxy-client.key"),
		"--requestheader-allowed-names=front-proxy-client", "--requestheader-client-ca-file="+p("front-proxy-ca.crt"),
		"--requestheader-extra-headers-prefix=X-Remote-Extra-", "--requestheader-group-headers=X-Remote-Group",
		"--requestheader-username-headers=X-Remote-User",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+p("sa.pub"), "--service-account-signing-key-file="+p("sa.key"),
		"--service-cluster-ip-range="+serviceCIDR,
		"--tls-cert-file="+p("apiserver.crt"), "--tls-private-key-file="+p("apiserver.key"),
		// A loopback address may not be an endpoint of the kubernetes
		// Service: nothing reconciles it (no pod here talks to the API
		// server through the Service; there is no kube-proxy).
		"--endpoint-reconciler-type=none")
	c.apiserver.waitHTTPS(t, c.Server+"/readyz", c.pki.ca.TLSConfig(t, c.pki.admin), "ok", 120*time.Second)

	c.AdminKubeconfig = filepath.Join(dir, "admin.conf")
	c.pki.writeKubeconfig(t, c.AdminKubeconfig, c.Server, "kubernetes-admin", c.pki.admin)
	c.Config = &rest.Config{Host: c.Server, TLSClientConfig: rest.TLSClientConfig{
		CAData: c.pki.ca.CertPEM, CertData: c.pki.admin.CertPEM, KeyData: c.pki.admin.KeyPEM}}
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		t.Fatal(err)
	}
	if o.DRA {
		deploy := filepath.Join(framework.ModuleRoot(t), "deploy", "dra")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := c.Kubectl(ctx, "apply", "-f", filepath.Join(deploy, "deviceclasses.yaml"), "-f", filepath.Join(deploy, "rbac.yaml"))
		cancel()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}

	cmConf := filepath.Join(dir, "controller-manager.conf")
	c.pki.kubeconfig(t, cmConf, c.Server, "system:kube-controller-manager")
	cmPort := port(t)
	c.cm = startProc(t, logs, "kube-controller-manager", c.Bins["kube-controller-manager"],
		"--kubeconfig="+cmConf, "--authentication-kubeconfig="+cmConf, "--authorization-kubeconfig="+cmConf,
		"--bind-address=127.0.0.1", "--secure-port="+cmPort, "--cert-dir="+filepath.Join(dir, "controller-manager-certs"),
		"--client-ca-file="+p("ca.crt"), "--requestheader-client-ca-file="+p("front-proxy-ca.crt"),
		"--cluster-name=kubernetes",
		"--cluster-signing-cert-file="+p("ca.crt"), "--cluster-signing-key-file="+p("ca.key"),
		"--controllers=*,bootstrapsigner,tokencleaner", "--leader-elect=true",
		"--root-ca-file="+p("ca.crt"), "--service-account-private-key-file="+p("sa.key"),
		"--use-service-account-credentials=true")
	schedConf := filepath.Join(dir, "scheduler.conf")
	c.pki.kubeconfig(t, schedConf, c.Server, "system:kube-scheduler")
	schedPort := port(t)
	c.s = startProc(t, logs, "kube-scheduler", c.Bins["kube-scheduler"],
		"--kubeconfig="+schedConf, "--authentication-kubeconfig="+schedConf, "--authorization-kubeconfig="+schedConf,
		"--bind-address=127.0.0.1", "--secure-port="+schedPort, "--cert-dir="+filepath.Join(dir, "scheduler-certs"),
		"--leader-elect=true")
	// Their serving certificates are self-signed ones of their own, as
	// with kubeadm; /healthz is open to anyone.
	selfSigned := &tls.Config{InsecureSkipVerify: true}
	c.cm.waitHTTPS(t, "https://127.0.0.1:"+cmPort+"/healthz", selfSigned, "ok", 60*time.Second)
	c.s.waitHTTPS(t, "https://127.0.0.1:"+schedPort+"/healthz", selfSigned, "ok", 60*time.Second)

	// The node: accel-cri with CNI, the test images, a fake GPU, the
	// crun and gVisor handlers and an empty signature policy directory,
	// then the kubelet.
	c.Registry = framework.StartRegistry(t, framework.RegistryOptions{})
	c.Images = framework.PushTestImages(t, c.Registry, "library/")
	kubeletDir := filepath.Join(dir, "kubelet")
	// accel-cri's device plugin registers at <dir>/device-plugins/kubelet.sock,
	// which is the kubelet's /var/lib/kubelet/device-plugins in its mount
	// namespace (test/e2e/kubelet).
	if err := os.MkdirAll(filepath.Join(kubeletDir, "device-plugins"), 0o755); err != nil {
		t.Fatal(err)
	}
	c.Devices = fakeGPUs(t, filepath.Join(dir, "devices"), o.GPUs)
	crun, runsc := framework.OCIRuntimes(t, dir)
	devConfig := fmt.Sprintf("device_plugin = true\nkubelet_plugin_dir = %q\n", filepath.Join(kubeletDir, "device-plugins")) + o.DevicesConfig
	if o.DRA {
		devConfig = c.draConfig(t, kubeletDir, o.DevicesConfig)
	}
	c.SignaturePolicyDir = filepath.Join(dir, "policy.d")
	if err := os.Mkdir(c.SignaturePolicyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Top-level keys first: the tables follow.
	config := fmt.Sprintf("signature_policy_dir = %q\n", c.SignaturePolicyDir) + c.Devices.AccelCRIConfig(filepath.Join(c.Devices.Root, "cdi"), devConfig) +
		fmt.Sprintf(`
[runtimes.crun]
  binary_name = %q
  root = %q
[runtimes.runsc]
  binary_name = %q
  root = %q
  sandbox_per_container = true
  snapshotter = "native"
`, crun, filepath.Join(dir, "runtimes", "crun"), runsc, filepath.Join(dir, "runtimes", "runsc")) + o.AccelCRIConfig
	c.AccelCRI = framework.StartAccelCRI(t, framework.AccelCRIOptions{SandboxImage: c.Images.Pause.Ref, WithCNI: true, Config: config})
	kubeletConf := filepath.Join(dir, "kubelet.conf")
	c.pki.kubeconfig(t, kubeletConf, c.Server, "system:node:"+NodeName, "system:nodes")
	a := c.AccelCRI
	// A node IP may not be a loopback address: the kubelet serves on the
	// gateway address of the test's CNI bridge, which is local-only.
	nodeIP := bridgeIP(t, a.Bridge)
	c.Kubelet = kubelet.NewKubelet(t, kubelet.KubeletOptions{
		Bin: c.Bins["kubelet"], Dir: kubeletDir, Endpoint: "unix://" + a.Socket,
		CgroupRoot: a.CgroupRoot(), NodeName: NodeName, Address: nodeIP, CA: c.pki.ca, Kubeconfig: kubeletConf,
		ExtraConfig: o.KubeletConfig,
		Drained:     func() bool { return a.Runtime != nil && kubelet.NoReadySandbox(a.Runtime)() },
	})
	// Runs first: the workloads go while every component still runs, so
	// the kubelet itself stops their pods.
	t.Cleanup(func() { c.deleteWorkloads(t) })
	c.WaitNodeReady(t, 2*time.Minute)
	return c
}

// GPU is the node's fake GPU: an Intel Arc (8086:4680, i915) at PCI
// 0000:00:02.0 with /dev/dri/card0 and renderD128, whose nodes reuse the
// numbers of /dev/loop-control and /dev/fuse (harmless host devices, as in
// the kubelet and device suites). ResourceName is what pods request.
var GPU = devicetest.DRMGPU{PCI: "0000:00:02.0", Vendor: "0x8086", Device: "0x4680", Driver: "i915", Card: 0, Render: 128,
	CardNum: devicetest.LoopControl, RenderNum: devicetest.Fuse, CardGID: 44, RenderGID: 993}

// GPU2 is a second fake Intel GPU for the DRA cases: an Arc A770 (xe) at
// 0000:00:03.0 with card1 and renderD129, reusing the numbers of
// /dev/btrfs-control and /dev/kvm (harmless to open, outside runc's
// default rules), the same groups as GPU.
var GPU2 = devicetest.DRMGPU{PCI: "0000:00:03.0", Vendor: "0x8086", Device: "0x56a0", Driver: "xe", Card: 1, Render: 129,
	CardNum: BtrfsControl, RenderNum: devicetest.KVM, CardGID: 44, RenderGID: 993}

// BtrfsControl is the number of /dev/btrfs-control.
var BtrfsControl = devicetest.Num{Major: 10, Minor: 234}

// ResourceName is the extended resource of GPU.
const ResourceName = "accel-cri.io/intel-gpu"

// hostNodes are the host devices whose numbers the fake GPUs reuse.
var hostNodes = map[devicetest.Num]string{
	devicetest.Fuse: "/dev/fuse", devicetest.LoopControl: "/dev/loop-control",
	devicetest.KVM: "/dev/kvm", BtrfsControl: "/dev/btrfs-control",
}

// fakeGPUs makes the sysfs and dev trees of gpus (nil: GPU) under dir.
func fakeGPUs(t testing.TB, dir string, gpus []devicetest.DRMGPU) *devicetest.Host {
	t.Helper()
	if gpus == nil {
		gpus = []devicetest.DRMGPU{GPU}
	}
	for _, g := range gpus {
		for _, n := range []devicetest.Num{g.CardNum, g.RenderNum} {
			p, ok := hostNodes[n]
			if !ok {
				t.Fatalf("fake GPU %s: %v is not one of the host devices the suite reuses", g.PCI, n)
			}
			if _, err := os.Stat(p); err != nil {
				t.Fatalf("fake GPU %s reuses the numbers of %s: %v", g.PCI, p, err)
			}
		}
	}
	h := devicetest.NewHost(t, dir)
	for _, g := range gpus {
		h.AddDRMGPU(g)
	}
	return h
}

// draConfig is the [devices] lines of accel-cri as the node's DRA driver
// (Options.DRA): the device plugin off, extra, then [devices.dra] with a
// kubeconfig of the node's identity and the kubelet's plugin dirs (under
// the root dir kubelet.NewKubelet gives it, <kubeletDir>/root), made here
// before accel-cri starts.
func (c *Cluster) draConfig(t testing.TB, kubeletDir, extra string) string {
	t.Helper()
	root := filepath.Join(kubeletDir, "root")
	c.DRAPluginsDir = filepath.Join(root, "plugins")
	registry := filepath.Join(root, "plugins_registry")
	for _, d := range []string{c.DRAPluginsDir, registry} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	kubeconfig := filepath.Join(c.Dir, "accel-cri-dra.conf")
	c.pki.kubeconfig(t, kubeconfig, c.Server, "system:node:"+NodeName, "system:nodes")
	return fmt.Sprintf(`device_plugin = false
%s
[devices.dra]
kubeconfig = %q
node_name = %q
kubelet_plugins_dir = %q
kubelet_registry_dir = %q
`, extra, kubeconfig, NodeName, c.DRAPluginsDir, registry)
}

// bridgeIP returns the IPv4 address of the named interface.
func bridgeIP(t testing.TB, name string) string {
	t.Helper()
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	t.Fatalf("%s has no IPv4 address", name)
	return ""
}

// WaitNodeReady waits for the node's Ready condition.
func (c *Cluster) WaitNodeReady(t testing.TB, timeout time.Duration) *corev1.Node {
	t.Helper()
	var last string
	deadline := time.Now().Add(timeout)
	for {
		n, err := c.Client.CoreV1().Nodes().Get(context.Background(), NodeName, metav1.GetOptions{})
		if err == nil {
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady {
					if cond.Status == corev1.ConditionTrue {
						return n
					}
					last = fmt.Sprintf("Ready=%s: %s: %s", cond.Status, cond.Reason, cond.Message)
				}
			}
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s not Ready after %s: %s\nkubelet log tail:\n%s", NodeName, timeout, last, c.Kubelet.LogTail(40))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// Kubectl runs kubectl as kubernetes-admin and returns its stdout; stderr
// is in the error.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.Bins["kubectl"], append([]string{"--kubeconfig=" + c.AdminKubeconfig}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// deleteWorkloads deletes every namespace but the system ones, and the
// pods left in the default namespace, then waits for the kubelet to have
// stopped them all (accel-cri without a ready sandbox).
func (c *Cluster) deleteWorkloads(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := c.Kubectl(ctx, "delete", "namespaces", "--ignore-not-found", "--wait=false",
		"--field-selector=metadata.name!=default,metadata.name!=kube-system,metadata.name!=kube-public,metadata.name!=kube-node-lease"); err != nil {
		t.Logf("cleanup: %v", err)
	}
	if _, err := c.Kubectl(ctx, "delete", "deployments,replicasets,jobs,pods", "--all", "-n", "default", "--wait=false"); err != nil {
		t.Logf("cleanup: %v", err)
	}
	drained := kubelet.NoReadySandbox(c.AccelCRI.Runtime)
	for ctx.Err() == nil {
		pods, err := c.Kubelet.Pods()
		if err == nil && len(pods) == 0 && drained() {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Errorf("cleanup: the kubelet still runs pods after their workloads were deleted:\n%s", c.Kubelet.LogTail(30))
}

// Namespace creates the namespace name for one case; when the case ends
// it is deleted, and cleanup waits until the API server has removed it,
// which the namespace controller does once the kubelet has stopped every
// pod in it.
func (c *Cluster) Namespace(t testing.TB, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The ServiceAccount admission plugin refuses pods until the
	// controller-manager has made the namespace's "default" account
	// (CI run J3: "error looking up service account ns/default"), as
	// Kubernetes' own e2e framework waits for it.
	sas, err := c.Client.CoreV1().ServiceAccounts(name).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=default"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{}); apierrors.IsNotFound(err) {
	wait:
		for {
			select {
			case ev, ok := <-sas.ResultChan():
				if !ok {
					t.Fatalf("namespace %s: the watch for its default ServiceAccount ended", name)
				}
				if ev.Type == watch.Added {
					break wait
				}
			case <-ctx.Done():
				t.Fatalf("namespace %s: no default ServiceAccount within a minute", name)
			}
		}
	} else if err != nil {
		t.Fatal(err)
	}
	sas.Stop()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := c.Client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete namespace %s: %v", name, err)
			return
		}
		for ctx.Err() == nil {
			if _, err := c.Client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
				return
			}
			time.Sleep(500 * time.Millisecond)
		}
		pods, _ := c.Kubectl(context.Background(), "get", "pods", "-n", name, "-o", "wide")
		t.Errorf("namespace %s not gone 3m after its deletion; its pods:\n%s", name, pods)
	})
	return name
}

// broken reports whether a component exited or the node is not Ready: the
// cases after a failed one then cannot run.
func (c *Cluster) broken() bool {
	for _, p := range []*proc{c.etcd, c.apiserver, c.cm, c.s} {
		if !p.running() {
			return true
		}
	}
	if !c.AccelCRI.Running() || !c.Kubelet.Running() {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := c.Client.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
	if err != nil {
		return true
	}
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status != corev1.ConditionTrue
		}
	}
	return true
}
