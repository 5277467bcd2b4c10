// Package shim owns accel-cri's direct dealings with the runc shims
// (containerd-shim-runc-v2) of the managed containerd, over their own
// ttrpc sockets (task API v3) instead of through containerd:
//
//   - finding a shim's socket: the address containerd wrote into a task
//     bundle's bootstrap.json, or the socket the runc shim makes for a task
//     group (the hash of containerd's address, the namespace and the group,
//     in /run/containerd/s);
//   - one cached connection per shim, shared by the exec processes driven
//     over it (NewExec), dropped when the shim closes it or a call breaks it;
//   - deleting, in the shim that holds it, a task containerd does not know
//     (DeleteTask: a create cut short);
//   - finding and ending shims nothing names any more (Reap): a shim daemon
//     left waiting, never serving, by a create cut short;
//   - reading the exits of stopped tasks from their shims (StoppedExits),
//     before a starting containerd deletes those tasks with their exits.
//
// On the host it reads the managed containerd's task bundles
// (<bundle root>/<namespace>/<task>: bootstrap.json, config.json; it never
// writes or removes them, the core does), connects to shim sockets, reads
// /proc, and signals only a process it has verified, through a pidfd that
// pins it, to be a runc shim daemon of this containerd address and
// namespace that serves nothing. It must not import the sandbox core,
// talk to containerd, or know pods and containers beyond the ids it is
// given; the core decides when to call it.
//
// A nil *Shims is a containerd accel-cri does not manage (task bundles and
// shim sockets unknown): execs then go through containerd (NewExec fails
// with ErrNotDirect) and nothing is cleaned or ended.
//
//	s := shim.New(shim.Config{Namespace: "accel-cri", BundleRoot: root, Address: addr})
//	defer s.Close()
//
//	socket, err := s.Socket(containerID) // a runc-type handler's task
//	p, err := s.NewExec(ctx, socket, containerID, execID, spec, stdio)
//	if errors.Is(err, shim.ErrNotDirect) { ... } // through containerd instead
//	err = p.Start(ctx)
//	code, err := p.Wait(ctx)
//	err = p.Delete(ctx)
//
//	s.DeleteTask(ctx, containerID, podID, containerID) // stale task, its bundle's shim
//	s.Reap(ctx, "recovery", nil)                       // shims nothing names
//	exits := s.StoppedExits(ctx)                       // no containerd running
package shim
