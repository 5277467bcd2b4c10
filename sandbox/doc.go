// Package sandbox owns pods and containers on containerd: the OCI spec of each
// container, the pod network namespace and its CNI networks, CRI log files,
// the in-memory state store rebuilt from containerd on start, and the
// monitor of task exits. It also owns the host facts those need: the cgroup
// driver, whether the OOM score can be lowered, and whether the runtime and
// the network are ready. NRI plugins hear of every lifecycle step through
// its sub-package nri, which it calls under its locks. It must not know
// about gRPC.
package sandbox
