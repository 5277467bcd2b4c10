// Package sandbox is the lifecycle core of pods and containers on
// containerd: the RPC bodies (one file each, pod_*.go and container_*.go),
// the in-memory store with its status checkpoints and its one status-update
// path (store.go), the monitor of task exits and OOMs and the only writers
// of exits (monitor.go), recovery at start (recover.go), CRI events, and
// the runtime handlers with what differs between their kinds of runtime
// (handlers.go, handler_kind.go). It must not know about gRPC.
//
// The work below it is done by its leaves, which never import it: OCI
// specs (sandbox/spec), container stdio and CRI logs (sandbox/stdio), the
// pod network (sandbox/podnet), a pod's own namespaces and files
// (sandbox/podns), direct calls to runc shims (sandbox/shim), resource-use
// figures (sandbox/stats, through the stats.Source the core implements),
// NRI (sandbox/nri, called under the core's locks) and cgroup facts
// (internal/cgroups).
//
// On the host it touches its state directory (<state>/sandbox: pod and
// container dirs, netns, image volume mounts, temp mounts) and root
// (status checkpoints), bind-mount sources kubelet names (made when
// missing, hostmounts.go), and, of a containerd it manages (WithTaskBundles),
// three things containerd owns: task bundles (removed only when containerd
// has no such task), shim sockets (through sandbox/shim) and each runc-style
// handler's OCI runtime state (a cut-short start's container force-deleted
// with the handler's binary and root).
package sandbox
