// Package stats owns the resource-use figures of pods and containers: the
// collector that samples every running task each period (and a task's first
// sample shortly after it starts), the CPU rates taken between samples, the
// answers of the CRI stats calls (ContainerStats, ListContainerStats,
// PodSandboxStats, ListPodSandboxStats) and the cAdvisor metrics of
// ListMetricDescriptors and ListPodSandboxMetrics, built once per sample and
// shared until it changes.
//
// On the host it only reads: the cgroup files of runc-style tasks (cgroupfs,
// v1 and v2), /proc/<pid>/fd and /proc/<pid>/limits of their processes,
// /proc/pressure, /proc/self/mountinfo, block device names in /sys/dev/block,
// and statfs of the directory the writable layers are on. Through containerd
// it asks for the metrics of tasks whose cgroups are not on this host
// (gVisor, VM handlers) and for the snapshotters' layer use.
//
// It does not know the sandbox core: the core describes its pods and
// containers through Source (plain values taken when asked) and reads the
// pods' interface counters for it. The core keeps the CRI calls; each is
// a filter over its store and a call here:
//
//	c := stats.New(source, client, stats.Config{Period: 10 * time.Second, CgroupRoot: "/sys/fs/cgroup", CgroupV2: true})
//	c.Start()
//	defer c.Close()
//	c.Started(containerID) // after StartContainer: sample it soon
//	list, err := c.ListContainerStats(ctx, source.Containers(""))
//	c.Forget(containerID) // after RemoveContainer
package stats
