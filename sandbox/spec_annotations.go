package sandbox

import "maps"

// This file builds the CRI annotations of the OCI spec. Sandboxed runtime
// shims (Kata, gVisor) read them to group a pod's containers. The pod's own
// annotations are not passed into the spec: containerd passes only the ones
// a runtime handler allows, and handler allowlists are not configurable yet.

// podAnnotations are the pause container's annotations.
func podAnnotations(p podSpecParams) map[string]string {
	md := p.Config.GetMetadata()
	a := map[string]string{
		AnnotationContainerType:    ContainerTypeSandbox,
		AnnotationSandboxID:        p.ID,
		AnnotationSandboxName:      md.GetName(),
		AnnotationSandboxNamespace: md.GetNamespace(),
		AnnotationSandboxUID:       md.GetUid(),
		AnnotationSandboxLogDir:    p.Config.GetLogDirectory(),
		AnnotationSandboxImageName: p.ImageName,
		AnnotationRuntimeHandler:   p.RuntimeHandler,
	}
	maps.Copy(a, podResourceAnnotations(p.Config.GetLinux().GetResources()))
	return a
}

// containerAnnotations are an app container's annotations.
func containerAnnotations(p containerSpecParams) map[string]string {
	md := p.PodConfig.GetMetadata()
	return map[string]string{
		AnnotationContainerType:    ContainerTypeContainer,
		AnnotationSandboxID:        p.SandboxID,
		AnnotationSandboxName:      md.GetName(),
		AnnotationSandboxNamespace: md.GetNamespace(),
		AnnotationSandboxUID:       md.GetUid(),
		AnnotationContainerName:    p.Config.GetMetadata().GetName(),
		AnnotationImageName:        p.ImageName,
		AnnotationRuntimeHandler:   p.RuntimeHandler,
	}
}
