// Package cgroups owns every cgroup fact of the host and every cgroup path
// rule accel-cri follows, so that the rest of accel-cri never reads
// mountinfo or /sys/fs/cgroup itself.
//
// Host facts are found once: Discover reads /proc/self/mountinfo and a few
// files below the cgroup mounts (cgroup.controllers, the swap accounting
// files, the hugetlb hierarchy) into a Host: the hierarchies mounted, the
// cgroup version (v1, hybrid, v2), the unified mount and which controllers
// exist. Local is the Host of this process, discovered on first use; the
// preflight checks discover through their own file reader, which tests
// fake.
//
// Path rules: the cgroup drivers (cgroupfs, systemd) and how "auto" is
// resolved, the OCI cgroupsPath of a pod or container under the cgroup
// parent kubelet sent (Path), the form a cgroupsPath must keep (CheckPath),
// and the directory it names in a hierarchy (Dir; systemd slices
// expanded).
//
// On the host it touches only cgroup directories: it removes the empty
// cgroups a container left (RemoveLeftover), kills the processes of such
// leftovers, and moves accel-cri into its own cgroup to warm the kernel's
// migration lock (MigrationWarmer). The helpers that list, kill and remove
// the cgroups below a parent (Walk, Leftovers, KillTree, RemoveTrees) are
// for the tests' leak checks and clean-up, which count and remove only
// what is below their own cgroup parent.
//
// A typical use:
//
//	h := cgroups.Local()
//	p, err := cgroups.Path(cgroups.DriverCgroupfs, "/kubepods/besteffort/pod1", id)
//	if err != nil {
//		return err
//	}
//	if !h.SwapAccounting {
//		// drop swap limits: runc fails on them
//	}
//	for _, d := range h.Dirs(p) {
//		fmt.Println(d) // /sys/fs/cgroup/memory/kubepods/besteffort/pod1/<id>, ...
//	}
package cgroups
