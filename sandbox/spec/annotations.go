package spec

import "maps"

// CRI annotations that sandboxed runtime shims (Kata, gVisor) and tools read
// to group a pod's containers and find their pod.
const (
	AnnotationContainerType    = "io.kubernetes.cri.container-type"
	AnnotationSandboxID        = "io.kubernetes.cri.sandbox-id"
	AnnotationSandboxName      = "io.kubernetes.cri.sandbox-name"
	AnnotationSandboxNamespace = "io.kubernetes.cri.sandbox-namespace"
	AnnotationSandboxUID       = "io.kubernetes.cri.sandbox-uid"
	AnnotationSandboxLogDir    = "io.kubernetes.cri.sandbox-log-directory"
	AnnotationSandboxCPUPeriod = "io.kubernetes.cri.sandbox-cpu-period"
	AnnotationSandboxCPUQuota  = "io.kubernetes.cri.sandbox-cpu-quota"
	AnnotationSandboxCPUShares = "io.kubernetes.cri.sandbox-cpu-shares"
	AnnotationSandboxMemory    = "io.kubernetes.cri.sandbox-memory"
	AnnotationContainerName    = "io.kubernetes.cri.container-name"
	AnnotationImageName        = "io.kubernetes.cri.image-name"
	AnnotationSandboxImageName = "io.kubernetes.cri.podsandbox.image-name"
	AnnotationRuntimeHandler   = "io.kubernetes.cri.runtime-handler"
	ContainerTypeSandbox       = "sandbox"
	ContainerTypeContainer     = "container"
)

// This file builds the CRI annotations of the OCI spec. Sandboxed runtime
// shims (Kata, gVisor) read them to group a pod's containers: the runc.v2
// and Kata shims run one shim per io.kubernetes.cri.sandbox-id, and runsc
// and Kata put every "container" into the sandbox of its "sandbox". The
// pod's and containers' own annotations are passed only where the runtime
// handler allows them (pod_annotations, container_annotations); the CRI
// annotations are set last so they cannot be overridden.

// podAnnotations are the pause container's annotations.
func podAnnotations(p Pod) map[string]string {
	md := p.Config.GetMetadata()
	a := maps.Clone(p.PassedAnnotations)
	if a == nil {
		a = map[string]string{}
	}
	maps.Copy(a, map[string]string{
		AnnotationContainerType:    ContainerTypeSandbox,
		AnnotationSandboxID:        p.ID,
		AnnotationSandboxName:      md.GetName(),
		AnnotationSandboxNamespace: md.GetNamespace(),
		AnnotationSandboxUID:       md.GetUid(),
		AnnotationSandboxLogDir:    p.Config.GetLogDirectory(),
		AnnotationSandboxImageName: p.ImageName,
		AnnotationRuntimeHandler:   p.Handler.Name,
	})
	maps.Copy(a, podResourceAnnotations(p.Config.GetLinux().GetResources()))
	return a
}

// containerAnnotations are an app container's annotations.
func containerAnnotations(p Container) map[string]string {
	md := p.PodConfig.GetMetadata()
	a := maps.Clone(p.PassedAnnotations)
	if a == nil {
		a = map[string]string{}
	}
	maps.Copy(a, map[string]string{
		AnnotationContainerType:    ContainerTypeContainer,
		AnnotationSandboxID:        p.SandboxID,
		AnnotationSandboxName:      md.GetName(),
		AnnotationSandboxNamespace: md.GetNamespace(),
		AnnotationSandboxUID:       md.GetUid(),
		AnnotationContainerName:    p.Config.GetMetadata().GetName(),
		AnnotationImageName:        p.ImageName,
		AnnotationRuntimeHandler:   p.Handler.Name,
	})
	if p.Handler.SandboxPerContainer {
		// Without a type, runsc and Kata make the container a sandbox
		// of its own (sharing the pod's network namespace).
		delete(a, AnnotationContainerType)
	}
	return a
}
