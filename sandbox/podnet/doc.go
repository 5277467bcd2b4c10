// Package podnet owns the pod network: the CNI configuration of the node
// (go-cni over the conf dir, reloaded on change, and its readiness), CNI ADD
// and DEL of a pod with its CNI args (labels, port mappings, bandwidth, DNS,
// cgroup parent, annotations), the pod's IPs, the pod network namespaces
// (made under a directory the caller names, also inside a new user
// namespace, removed, and orphans swept), the interface counters inside a
// namespace and connections to its loopback (port-forward).
//
// On the host it may touch the network namespaces under that directory and
// what the CNI plugins it runs touch (links, addresses, iptables rules, the
// CNI cache); it reads the conf dir and nothing else of the host. It knows
// pods only as an id, a netns path and their CRI config; it never knows
// containers and never imports the sandbox core.
//
// A typical pod:
//
//	n, err := podnet.New("/etc/cni/net.d", []string{"/opt/cni/bin"})
//	path, err := podnet.NewNetNS(stateDir + "/netns")
//	ips, err := n.SetupPod(ctx, podID, path, cfg) // CNI ADD
//	...
//	err = n.TeardownPod(ctx, podID, path, cfg) // CNI DEL
//	err = podnet.RemoveNetNS(path)
package podnet
