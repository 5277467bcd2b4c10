// Package podns owns a pod's own namespaces and files, the parts of a pod
// that are neither its network nor its containers:
//
//   - the UTS and IPC namespaces of a pod without a pause process, made on a
//     thread of their own (with the pod's hostname and IPC sysctls) and
//     pinned by bind mounts under <pod dir>/ns; the user namespace that owns
//     a user-namespaced pod's network namespace, pinned there too (Pin,
//     PinNetNSOwner, Unpin, Namespaces.Mounted);
//   - the pod's namespaced sysctls: IPC ones inside the pinned IPC
//     namespace, net ones inside the pod's network namespace
//     (ApplyNetSysctls);
//   - the pod files every container binds: hostname, hosts, resolv.conf and
//     the /dev/shm tmpfs (WriteFiles, ReleaseShm, RemoveFiles).
//
// On the host it touches only the pod directory it is given (files, mounts
// and namespace pins below it), /proc/sys of the namespaces it made or was
// handed, and it reads /etc/hosts, /etc/resolv.conf and the host name. It
// does not decide whether a pod needs a pause process (the caller calls Pin
// only for a pod without one), and it knows no containers and no
// containerd; it must not import the sandbox core.
//
// RunPodSandbox of a pod without a pause process, in short:
//
//	files, err := podns.WriteFiles(podDir, cfg, shmSize)
//	if err != nil { ... }
//	defer func() { if failed { podns.RemoveFiles(podDir) } }()
//	pinned, err := podns.Pin(podDir, cfg) // UTS (hostname), IPC (+ IPC sysctls)
//	if err != nil { ... }
//	// ... network namespace and CNI ADD ...
//	err = podns.ApplyNetSysctls(netnsPath, cfg.GetLinux().GetSysctls())
//
// StopPodSandbox releases the shm memory and the IPC objects
// (podns.ReleaseShm(podDir), podns.Unpin(pinned)); RemovePodSandbox removes
// the directory with everything still mounted below it
// (podns.RemoveFiles(podDir)).
package podns
