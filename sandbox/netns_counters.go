package sandbox

import (
	"github.com/containerd/containerd/v2/pkg/netns"
	cnins "github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/accel-cri/accel-cri/sandbox/stats"
)

// netnsLinks reads the counters of the interfaces inside a pod's network
// namespace (the pod stats' and metrics' network figures, statsSource).
func netnsLinks(path string) ([]stats.Link, error) {
	var out []stats.Link
	err := netns.LoadNetNS(path).Do(func(cnins.NetNS) error {
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		for _, l := range links {
			a := l.Attrs()
			if a.Statistics == nil {
				continue
			}
			st := a.Statistics
			out = append(out, stats.Link{Name: a.Name,
				RxBytes: st.RxBytes, RxPackets: st.RxPackets, RxErrors: st.RxErrors, RxDropped: st.RxDropped,
				TxBytes: st.TxBytes, TxPackets: st.TxPackets, TxErrors: st.TxErrors, TxDropped: st.TxDropped})
		}
		return nil
	})
	return out, err
}
