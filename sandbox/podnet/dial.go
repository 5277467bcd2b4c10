package podnet

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/containerd/containerd/v2/pkg/netns"
	cnins "github.com/containernetworking/plugins/pkg/ns"
)

// dialTimeout bounds the connect to the pod's port.
const dialTimeout = 10 * time.Second

// DialLoopback connects to port on the loopback, 127.0.0.1 or else [::1], of
// the network namespace at netnsPath ("" is the host's), for port-forward.
// The socket is created inside the namespace (netns Do switches a locked OS
// thread and back) and keeps working in it after the switch back. Only IP
// literals are dialled: no resolver runs in the namespace.
func DialLoopback(ctx context.Context, netnsPath string, port int32) (net.Conn, error) {
	dial := func() (net.Conn, error) {
		d := net.Dialer{Timeout: dialTimeout}
		p := strconv.Itoa(int(port))
		c, err4 := d.DialContext(ctx, "tcp4", net.JoinHostPort("127.0.0.1", p))
		if err4 == nil {
			return c, nil
		}
		c, err6 := d.DialContext(ctx, "tcp6", net.JoinHostPort("::1", p))
		if err6 == nil {
			return c, nil
		}
		return nil, fmt.Errorf("connect to port %d: IPv4: %v; IPv6: %v", port, err4, err6)
	}
	if netnsPath == "" {
		return dial()
	}
	var conn net.Conn
	err := netns.LoadNetNS(netnsPath).Do(func(cnins.NetNS) error {
		var err error
		conn, err = dial()
		return err
	})
	return conn, err
}
