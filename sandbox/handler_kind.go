package sandbox

import (
	"path/filepath"
	"strings"
)

// runtimeKind is what differs between the kinds of runtime a handler runs
// pods on, chosen once per handler when it is configured (newHandler), so
// the lifecycle, stats, exec and stale-task code ask the handler instead of
// testing runtime types and binary names.
type runtimeKind interface {
	// hostProcesses reports whether tasks run as host processes in their
	// OCI cgroupsPath (runc, crun): pods can then do without a pause
	// process (namespaces joined by path), their cgroup files are read for
	// stats, and the runtime applies bind mount options on the host.
	hostProcesses() bool
	// directExec reports whether execs can be driven over the task's shim
	// socket (sandbox/shim), which speaks the runc.v2 shim's task API.
	directExec() bool
	// ociState is the OCI runtime binary and its namespaced state root
	// parent that a cut-short start can leave a container in, for the
	// runc.v2 shim ("" root: the runtime keeps none we can reach).
	ociState() (binary, root string)
}

// kindOf chooses the kind of a handler of containerd runtime type
// runtimeType; binary and root are the runc.v2 shim's OCI runtime.
func kindOf(runtimeType, binary, root string) runtimeKind {
	switch {
	case runtimeType == RuntimeTypeRunc && strings.Contains(filepath.Base(binary), "runsc"):
		// gVisor as the runc.v2 shim's binary: the shim is runc's, the
		// sandbox is gVisor's (its own cgroups and namespaces).
		return sandboxedOCI{binary: binary, root: root}
	case runtimeType == RuntimeTypeRunc:
		return hostOCI{binary: binary, root: root}
	default:
		// gVisor's own shim, Kata and other shims: a sandbox or VM built
		// around the pause container, reached only through containerd.
		return shimOnly{}
	}
}

// hostOCI is runc or crun under the runc.v2 shim.
type hostOCI struct{ binary, root string }

func (hostOCI) hostProcesses() bool               { return true }
func (hostOCI) directExec() bool                  { return true }
func (k hostOCI) ociState() (binary, root string) { return k.binary, k.root }

// sandboxedOCI is an OCI runtime with a sandbox of its own (runsc) under
// the runc.v2 shim.
type sandboxedOCI struct{ binary, root string }

func (sandboxedOCI) hostProcesses() bool               { return false }
func (sandboxedOCI) directExec() bool                  { return true }
func (k sandboxedOCI) ociState() (binary, root string) { return k.binary, k.root }

// shimOnly is a shim of its own kind (gVisor's, Kata's).
type shimOnly struct{}

func (shimOnly) hostProcesses() bool             { return false }
func (shimOnly) directExec() bool                { return false }
func (shimOnly) ociState() (binary, root string) { return "", "" }
