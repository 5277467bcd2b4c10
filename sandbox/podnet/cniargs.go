package podnet

import (
	"fmt"
	"math"
	"strings"

	"github.com/containerd/errdefs"
	gocni "github.com/containerd/go-cni"
	"github.com/containernetworking/cni/libcni"
	"k8s.io/apimachinery/pkg/api/resource"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Annotations that carry pod traffic shaping, as kubelet sets them.
const (
	annotationIngressBandwidth = "kubernetes.io/ingress-bandwidth"
	annotationEgressBandwidth  = "kubernetes.io/egress-bandwidth"
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
	in, inOK, err := parse(annotationIngressBandwidth)
	if err != nil {
		return nil, err
	}
	out, outOK, err := parse(annotationEgressBandwidth)
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
