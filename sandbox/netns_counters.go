package sandbox

import (
	"github.com/accel-cri/accel-cri/sandbox/podnet"
	"github.com/accel-cri/accel-cri/sandbox/stats"
)

// netnsLinks reads the counters of the interfaces inside a pod's network
// namespace (podnet) for the pod stats' and metrics' network figures
// (statsSource).
func netnsLinks(path string) ([]stats.Link, error) {
	counters, err := podnet.InterfaceCounters(path)
	out := make([]stats.Link, 0, len(counters))
	for _, c := range counters {
		out = append(out, stats.Link{Name: c.Interface,
			RxBytes: c.RxBytes, RxPackets: c.RxPackets, RxErrors: c.RxErrors, RxDropped: c.RxDropped,
			TxBytes: c.TxBytes, TxPackets: c.TxPackets, TxErrors: c.TxErrors, TxDropped: c.TxDropped})
	}
	return out, err
}
