package sandbox

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/pkg/netns"
	"github.com/containerd/errdefs"
	gocni "github.com/containerd/go-cni"
	"github.com/containernetworking/cni/libcni"
	cnins "github.com/containernetworking/plugins/pkg/ns"
	"k8s.io/apimachinery/pkg/api/resource"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
)

// PodInterface is the interface inside the pod network namespace whose IPs
// are the pod's IPs (go-cni names the first non-loopback network eth0).
const PodInterface = "eth0"

// Annotations that carry pod traffic shaping, as kubelet sets them.
const (
	AnnotationIngressBandwidth = "kubernetes.io/ingress-bandwidth"
	AnnotationEgressBandwidth  = "kubernetes.io/egress-bandwidth"
)

// cniPodAnnotationsCapability is the CNI capability that hands the pod's
// annotations to plugins that declare it (the same key containerd uses).
const cniPodAnnotationsCapability = "io.kubernetes.cri.pod-annotations"

// Bandwidth limits kubelet accepts (in bits per second), and the burst
// containerd and CRI-O pass with a rate.
var (
	minBandwidth = resource.MustParse("1k")
	maxBandwidth = resource.MustParse("1P")
)

const bandwidthBurst = math.MaxUint32

// PodNetwork is what the CRI reports for a pod: its primary IP and additional
// IPs (dual-stack).
type PodNetwork struct {
	IP            string   `json:"ip,omitempty"`
	AdditionalIPs []string `json:"additionalIPs,omitempty"`
}

// NewPodNetNS creates a persistent network namespace for a pod, bind-mounted
// under baseDir, and returns its path.
func NewPodNetNS(baseDir string) (string, error) {
	ns, err := netns.NewNetNS(baseDir)
	if err != nil {
		return "", fmt.Errorf("create pod netns under %s: %w", baseDir, err)
	}
	return ns.GetPath(), nil
}

// RemovePodNetNS unmounts the pod network namespace at path and removes the
// file. A path that is already gone is not an error.
func RemovePodNetNS(path string) error {
	if path == "" {
		return nil
	}
	if err := netns.LoadNetNS(path).Remove(); err != nil {
		return fmt.Errorf("remove pod netns %s: %w", path, err)
	}
	return nil
}

// SetupPod attaches the pod whose network namespace is netnsPath to every
// loaded CNI network (CNI ADD) and returns the IPs of its eth0 interface,
// IPv4 first. When anything fails after ADD started, what was made is torn
// down again (CNI DEL) before the error is returned.
func (n *Network) SetupPod(ctx context.Context, podID, netnsPath string, cfg *runtimeapi.PodSandboxConfig) (PodNetwork, error) {
	if err := n.loaded(); err != nil {
		return PodNetwork{}, fmt.Errorf("setup network of pod %s: %w", podID, err)
	}
	args, err := podCNIArgs(podID, cfg, true)
	if err != nil {
		return PodNetwork{}, fmt.Errorf("setup network of pod %s: %w", podID, err)
	}
	result, err := n.cni.Setup(ctx, podID, netnsPath, args.namespaceOpts()...)
	if err == nil {
		var pn PodNetwork
		pn, err = podIPs(result)
		if err == nil {
			return pn, nil
		}
	}
	err = notReady(err)
	// Undo with a context of its own: ctx may be what ended the ADD.
	cleanupCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cniCleanupTimeout)
	defer cancel()
	if derr := n.del(cleanupCtx, podID, netnsPath, args); derr != nil {
		klog.ErrorS(derr, "Tearing down the network of a pod whose setup failed", "pod", podID)
		return PodNetwork{}, fmt.Errorf("setup network of pod %s: %w (undoing it: %v)", podID, err, derr)
	}
	return PodNetwork{}, fmt.Errorf("setup network of pod %s: %w", podID, err)
}

// TeardownPod detaches the pod from every loaded CNI network (CNI DEL): it
// releases the pod's IPs and removes its port mappings. It succeeds when the
// network namespace is already gone or ADD never happened, so a stop can be
// retried.
func (n *Network) TeardownPod(ctx context.Context, podID, netnsPath string, cfg *runtimeapi.PodSandboxConfig) error {
	if err := n.loaded(); err != nil {
		return fmt.Errorf("teardown network of pod %s: %w", podID, err)
	}
	// Bad bandwidth annotations made the setup fail; they must not stop the
	// teardown, and DEL of the bandwidth plugin does not need the rates.
	args, err := podCNIArgs(podID, cfg, false)
	if err != nil {
		return fmt.Errorf("teardown network of pod %s: %w", podID, err)
	}
	path, err := liveNetNS(netnsPath)
	if err != nil {
		return fmt.Errorf("teardown network of pod %s: %w", podID, err)
	}
	if err := n.del(ctx, podID, path, args); err != nil {
		return fmt.Errorf("teardown network of pod %s: %w", podID, err)
	}
	return nil
}

// cniCleanupTimeout bounds the DEL that undoes a failed ADD.
const cniCleanupTimeout = 2 * time.Minute

// loaded is nil when a network config is loaded.
func (n *Network) loaded() error {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.loadErr
}

// notReady turns go-cni's "no config" error into ErrNetworkNotReady.
func notReady(err error) error {
	if err != nil && gocni.IsCNINotInitialized(err) && !errors.Is(err, ErrNetworkNotReady) {
		return fmt.Errorf("%w: %w", ErrNetworkNotReady, err)
	}
	return err
}

// liveNetNS returns path when it is a network namespace, and "" (the CNI
// convention for "the namespace is gone, clean up what you can") when the
// path is missing or no longer a mounted namespace.
func liveNetNS(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	ns, err := cnins.GetNS(path)
	if err != nil {
		var notExist cnins.NSPathNotExistErr
		var notNS cnins.NSPathNotNSErr
		if errors.As(err, &notExist) || errors.As(err, &notNS) {
			return "", nil
		}
		return "", fmt.Errorf("open netns %s: %w", path, err)
	}
	ns.Close()
	return path, nil
}

// del runs CNI DEL for all networks. If the list DEL fails (a plugin of the
// list fails or is missing), every plugin of every network is asked on its
// own, in reverse order, so the plugins that work still release what they
// hold (IPs, port mappings). The list's error is returned unless every
// plugin then succeeded on its own.
func (n *Network) del(ctx context.Context, podID, netnsPath string, args cniArgs) error {
	err := notReady(n.cni.Remove(ctx, podID, netnsPath, args.namespaceOpts()...))
	if err == nil || errors.Is(err, ErrNetworkNotReady) {
		return err
	}
	if perr := n.delEachPlugin(ctx, podID, netnsPath, args); perr == nil {
		klog.InfoS("CNI DEL of the network list failed but each plugin alone succeeded", "pod", podID, "listError", err)
		return nil
	}
	return err
}

// delEachPlugin runs DEL plugin by plugin, going on after failures, and
// returns them joined.
func (n *Network) delEachPlugin(ctx context.Context, podID, netnsPath string, args cniArgs) error {
	conf := n.cni.GetConfig()
	cniConf := libcni.NewCNIConfig(conf.PluginDirs, nil)
	var errs []error
	for _, network := range conf.Networks {
		if network.Config == nil {
			continue
		}
		list, err := libcni.ConfListFromBytes([]byte(network.Config.Source))
		if err != nil {
			errs = append(errs, fmt.Errorf("network %s: %w", network.Config.Name, err))
			continue
		}
		rt := args.runtimeConf(podID, netnsPath, network.IFName)
		for i := len(list.Plugins) - 1; i >= 0; i-- {
			one := &libcni.NetworkConfigList{
				Name:       list.Name,
				CNIVersion: list.CNIVersion,
				Plugins:    []*libcni.PluginConfig{list.Plugins[i]},
				Bytes:      list.Bytes,
			}
			if err := cniConf.DelNetworkList(ctx, one, rt); err != nil {
				klog.ErrorS(err, "CNI DEL of one plugin", "pod", podID, "network", list.Name, "plugin", list.Plugins[i].Network.Type)
				errs = append(errs, fmt.Errorf("network %s: %w", list.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// cniArgs are the CNI_ARGS labels and capability args of one pod.
type cniArgs struct {
	labels map[string]string
	caps   map[string]any
}

func (a cniArgs) namespaceOpts() []gocni.NamespaceOpts {
	opts := []gocni.NamespaceOpts{gocni.WithLabels(a.labels)}
	for k, v := range a.caps {
		opts = append(opts, gocni.WithCapability(k, v))
	}
	return opts
}

// runtimeConf is what go-cni builds from the same args, for calls that go to
// libcni directly.
func (a cniArgs) runtimeConf(podID, netnsPath, ifName string) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{ContainerID: podID, NetNS: netnsPath, IfName: ifName, CapabilityArgs: a.caps}
	for k, v := range a.labels {
		rt.Args = append(rt.Args, [2]string{k, v})
	}
	return rt
}

// podCNIArgs translates the pod config into CNI args. strict makes a bad
// bandwidth annotation an error; otherwise bandwidth is left out.
func podCNIArgs(podID string, cfg *runtimeapi.PodSandboxConfig, strict bool) (cniArgs, error) {
	a := cniArgs{
		labels: map[string]string{
			"K8S_POD_NAMESPACE":          cfg.GetMetadata().GetNamespace(),
			"K8S_POD_NAME":               cfg.GetMetadata().GetName(),
			"K8S_POD_INFRA_CONTAINER_ID": podID,
			"K8S_POD_UID":                cfg.GetMetadata().GetUid(),
			"IgnoreUnknown":              "1",
		},
		caps: map[string]any{},
	}
	annotations := cfg.GetAnnotations()
	if annotations == nil {
		annotations = map[string]string{}
	}
	a.caps[cniPodAnnotationsCapability] = annotations
	if pm := cniPortMappings(cfg.GetPortMappings()); len(pm) > 0 {
		a.caps["portMappings"] = pm
	}
	bw, err := cniBandwidth(annotations)
	if err != nil && strict {
		return cniArgs{}, err
	}
	if err == nil && bw != nil {
		a.caps["bandwidth"] = *bw
	}
	if dns := cfg.GetDnsConfig(); dns != nil {
		a.caps["dns"] = gocni.DNS{Servers: dns.GetServers(), Searches: dns.GetSearches(), Options: dns.GetOptions()}
	}
	if cg := cfg.GetLinux().GetCgroupParent(); cg != "" {
		a.caps["cgroupPath"] = cg
	}
	return a, nil
}

// cniPortMappings keeps the mappings that publish a host port.
func cniPortMappings(in []*runtimeapi.PortMapping) []gocni.PortMapping {
	var out []gocni.PortMapping
	for _, m := range in {
		if m.GetHostPort() <= 0 {
			continue
		}
		out = append(out, gocni.PortMapping{
			HostPort:      m.GetHostPort(),
			ContainerPort: m.GetContainerPort(),
			Protocol:      strings.ToLower(m.GetProtocol().String()),
			HostIP:        m.GetHostIp(),
		})
	}
	return out
}

// cniBandwidth reads the kubelet bandwidth annotations (bits per second as
// Kubernetes quantities, e.g. "10M"). nil when neither is set.
func cniBandwidth(annotations map[string]string) (*gocni.BandWidth, error) {
	parse := func(key string) (uint64, bool, error) {
		s, ok := annotations[key]
		if !ok {
			return 0, false, nil
		}
		q, err := resource.ParseQuantity(s)
		if err != nil {
			return 0, false, fmt.Errorf("annotation %s=%q: %w: %v", key, s, errdefs.ErrInvalidArgument, err)
		}
		if q.Cmp(minBandwidth) < 0 || q.Cmp(maxBandwidth) > 0 {
			return 0, false, fmt.Errorf("annotation %s=%q: %w: must be between 1k and 1P bits per second", key, s, errdefs.ErrInvalidArgument)
		}
		return uint64(q.Value()), true, nil
	}
	in, inOK, err := parse(AnnotationIngressBandwidth)
	if err != nil {
		return nil, err
	}
	out, outOK, err := parse(AnnotationEgressBandwidth)
	if err != nil {
		return nil, err
	}
	if !inOK && !outOK {
		return nil, nil
	}
	bw := &gocni.BandWidth{}
	if inOK {
		bw.IngressRate, bw.IngressBurst = in, bandwidthBurst
	}
	if outOK {
		bw.EgressRate, bw.EgressBurst = out, bandwidthBurst
	}
	return bw, nil
}

// podIPs picks the pod's IPs from the eth0 interface: the first IPv4 address
// is primary, the others follow in CNI order.
func podIPs(result *gocni.Result) (PodNetwork, error) {
	iface, ok := result.Interfaces[PodInterface]
	if !ok || len(iface.IPConfigs) == 0 {
		return PodNetwork{}, fmt.Errorf("cni result has no IP on %s: %w", PodInterface, gocni.ErrInvalidResult)
	}
	ips := make([]net.IP, 0, len(iface.IPConfigs))
	for _, c := range iface.IPConfigs {
		if c != nil && c.IP != nil {
			ips = append(ips, c.IP)
		}
	}
	if len(ips) == 0 {
		return PodNetwork{}, fmt.Errorf("cni result has no IP on %s: %w", PodInterface, gocni.ErrInvalidResult)
	}
	primary := 0
	for i, ip := range ips {
		if ip.To4() != nil {
			primary = i
			break
		}
	}
	pn := PodNetwork{IP: ips[primary].String()}
	for i, ip := range ips {
		if i != primary {
			pn.AdditionalIPs = append(pn.AdditionalIPs, ip.String())
		}
	}
	return pn, nil
}
