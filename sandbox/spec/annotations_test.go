package spec

import (
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestSpecPassedAnnotations: the annotations a handler lets through are
// kept, the CRI ones win over them, and a handler running each container
// in a sandbox of its own gets no container type.
func TestSpecPassedAnnotations(t *testing.T) {
	passed := map[string]string{"io.katacontainers.config.hypervisor.default_memory": "512", AnnotationSandboxID: "spoofed", AnnotationContainerType: "spoofed"}
	pod := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "web"}}
	for _, tc := range []struct {
		desc   string
		got    map[string]string
		want   map[string]string
		absent []string
	}{
		{
			desc: "pause",
			got:  podAnnotations(Pod{ID: "p1", Config: pod, Handler: Handler{Name: "kata"}, PassedAnnotations: passed}),
			want: map[string]string{
				AnnotationContainerType: ContainerTypeSandbox, AnnotationSandboxID: "p1", AnnotationSandboxName: "web", AnnotationRuntimeHandler: "kata",
				"io.katacontainers.config.hypervisor.default_memory": "512",
			},
		},
		{
			desc: "container",
			got: containerAnnotations(Container{SandboxID: "p1", PodConfig: pod, Config: &runtimeapi.ContainerConfig{}, Handler: Handler{Name: "kata"},
				PassedAnnotations: passed}),
			want: map[string]string{
				AnnotationContainerType: ContainerTypeContainer, AnnotationSandboxID: "p1", AnnotationRuntimeHandler: "kata",
				"io.katacontainers.config.hypervisor.default_memory": "512",
			},
		},
		{
			desc: "sandbox per container: no container type, still the sandbox id",
			got: containerAnnotations(Container{SandboxID: "p1", PodConfig: pod, Config: &runtimeapi.ContainerConfig{},
				Handler: Handler{Name: "runsc", SandboxPerContainer: true}, PassedAnnotations: passed}),
			want:   map[string]string{AnnotationSandboxID: "p1", AnnotationRuntimeHandler: "runsc"},
			absent: []string{AnnotationContainerType},
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			for k, v := range tc.want {
				if tc.got[k] != v {
					t.Errorf("%s = %q, want %q", k, tc.got[k], v)
				}
			}
			for _, k := range tc.absent {
				if _, ok := tc.got[k]; ok {
					t.Errorf("%s set: %v", k, tc.got)
				}
			}
		})
	}
	if _, ok := passed[AnnotationSandboxName]; ok {
		t.Error("the passed annotations were changed")
	}
}
