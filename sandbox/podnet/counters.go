package podnet

import (
	"github.com/containerd/containerd/v2/pkg/netns"
	cnins "github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

// Counters are one interface's counters inside a pod network namespace.
type Counters struct {
	Interface                               string
	RxBytes, RxPackets, RxErrors, RxDropped uint64
	TxBytes, TxPackets, TxErrors, TxDropped uint64
}

// InterfaceCounters reads the counters of the interfaces inside the network
// namespace at netnsPath (netlink), in the kernel's order; lo and links
// without statistics are left out.
func InterfaceCounters(netnsPath string) ([]Counters, error) {
	var out []Counters
	err := netns.LoadNetNS(netnsPath).Do(func(cnins.NetNS) error {
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		for _, l := range links {
			a := l.Attrs()
			if a.Name == "lo" || a.Statistics == nil {
				continue
			}
			st := a.Statistics
			out = append(out, Counters{Interface: a.Name,
				RxBytes: st.RxBytes, RxPackets: st.RxPackets, RxErrors: st.RxErrors, RxDropped: st.RxDropped,
				TxBytes: st.TxBytes, TxPackets: st.TxPackets, TxErrors: st.TxErrors, TxDropped: st.TxDropped})
		}
		return nil
	})
	return out, err
}
