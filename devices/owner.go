package devices

import runtimespec "github.com/opencontainers/runtime-spec/specs-go"

// OwnNodes gives the device nodes of spec at the container paths in paths
// to the process's uid and gid instead of the host node's owner
// (containerd's device_ownership_from_security_context): a process that is
// not root can then open them without being in the node's group. It runs
// after the user is set; a spec without process or Linux section is left
// alone. The Injector (CDI devices) and sandbox/spec (CRI devices) both
// call it.
func OwnNodes(spec *runtimespec.Spec, paths []string) {
	if spec.Process == nil || spec.Linux == nil || len(paths) == 0 {
		return
	}
	owned := make(map[string]bool, len(paths))
	for _, p := range paths {
		owned[p] = true
	}
	uid, gid := spec.Process.User.UID, spec.Process.User.GID
	for i := range spec.Linux.Devices {
		if owned[spec.Linux.Devices[i].Path] {
			spec.Linux.Devices[i].UID, spec.Linux.Devices[i].GID = &uid, &gid
		}
	}
}
