package podns

import "testing"

func TestSysctlPath(t *testing.T) {
	for in, want := range map[string]string{
		"kernel.shmmax":                     "/proc/sys/kernel/shmmax",
		"net.ipv4.ip_local_port_range":      "/proc/sys/net/ipv4/ip_local_port_range",
		"net.ipv4.conf.eth0/100.forwarding": "/proc/sys/net/ipv4/conf/eth0.100/forwarding",
		"net/ipv4/conf/eth0.100/forwarding": "/proc/sys/net/ipv4/conf/eth0.100/forwarding",
		"fs.mqueue.msg_max":                 "/proc/sys/fs/mqueue/msg_max",
	} {
		if got := sysctlPath(in); got != want {
			t.Errorf("sysctlPath(%q) = %q, want %q", in, got, want)
		}
	}
	ipc, net := SplitSysctls(map[string]string{"kernel.sem": "1 2 3 4", "net.ipv4.ping_group_range": "0 0", "net/core/somaxconn": "1024"})
	if len(ipc) != 1 || ipc["kernel.sem"] == "" || len(net) != 2 {
		t.Errorf("SplitSysctls: ipc %v net %v", ipc, net)
	}
}
