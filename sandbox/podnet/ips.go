package podnet

import (
	"fmt"
	"net"

	gocni "github.com/containerd/go-cni"
)

// PodInterface is the interface inside the pod network namespace whose IPs
// are the pod's IPs (go-cni names the first non-loopback network eth0).
const PodInterface = "eth0"

// IPs are what the CRI reports for a pod: its primary IP and additional IPs
// (dual-stack). The core persists them in the pod's status checkpoint under
// these JSON names.
type IPs struct {
	IP            string   `json:"ip,omitempty"`
	AdditionalIPs []string `json:"additionalIPs,omitempty"`
}

// podIPs picks the pod's IPs from the eth0 interface: the first IPv4 address
// is primary, the others follow in CNI order.
func podIPs(result *gocni.Result) (IPs, error) {
	iface, ok := result.Interfaces[PodInterface]
	if !ok || len(iface.IPConfigs) == 0 {
		return IPs{}, fmt.Errorf("cni result has no IP on %s: %w", PodInterface, gocni.ErrInvalidResult)
	}
	ips := make([]net.IP, 0, len(iface.IPConfigs))
	for _, c := range iface.IPConfigs {
		if c != nil && c.IP != nil {
			ips = append(ips, c.IP)
		}
	}
	if len(ips) == 0 {
		return IPs{}, fmt.Errorf("cni result has no IP on %s: %w", PodInterface, gocni.ErrInvalidResult)
	}
	primary := 0
	for i, ip := range ips {
		if ip.To4() != nil {
			primary = i
			break
		}
	}
	pn := IPs{IP: ips[primary].String()}
	for i, ip := range ips {
		if i != primary {
			pn.AdditionalIPs = append(pn.AdditionalIPs, ip.String())
		}
	}
	return pn, nil
}
