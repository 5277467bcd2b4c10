// Package nri owns accel-cri's side of the Node Resource Interface
// (github.com/containerd/nri): the socket NRI plugins connect to, the
// plugins accel-cri launches itself, their synchronization with the pods
// and containers that exist, the events of pod and container lifecycles,
// and the adjustments plugins make to a container's OCI spec when it is
// created (checked, then applied as containerd applies them).
//
// The sandbox core calls it at each lifecycle step, under its own locks,
// and implements Runtime for it: the pods and containers to synchronize
// plugins with, and the updates and evictions plugins ask for, which go
// through the same paths as the CRI's UpdateContainerResources and
// StopContainer. It must not import the sandbox core, know gRPC, or talk to
// containerd.
//
// A nil *NRI is NRI switched off: every method is then a no-op, so the
// core calls it unconditionally:
//
//	n, err := nri.New(nri.Config{SocketPath: "/run/accel-cri/nri.sock", ...}, domain)
//	if err != nil { ... }
//	if err := n.Start(ctx); err != nil { ... } // after the runtime recovered its state
//	defer n.Close()
//
//	ctx, unblock := n.BlockSync(ctx) // a CRI call: no plugin synchronizes meanwhile
//	defer unblock()
//	if err := n.RunPodSandbox(ctx, pod); err != nil { ... } // undo the pod
package nri
