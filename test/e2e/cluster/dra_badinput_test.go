//go:build cluster

package cluster

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
)

// testDRABadInput: claims accel-cri cannot or must not prepare get a
// precise error where the pod's owner looks (its events), their pods
// never start, and nothing of them is prepared:
//   - opaque parameters for gpu.accel-cri.io, which takes none: the
//     kubelet's NodePrepareResources fails with accel-cri's message;
//   - a DeviceClass that does not exist: the scheduler says so and
//     nothing reaches the node.
func testDRABadInput(t *testing.T, c *Cluster) {
	ns := c.Namespace(t, "dra-bad-input")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	for _, tc := range []struct {
		name, class string
		config      []resourceapi.DeviceClaimConfiguration
		// want is in an event of the pod with reason reason.
		reason, want string
	}{
		{name: "opaque", class: intelGPUClass,
			config: []resourceapi.DeviceClaimConfiguration{{DeviceConfiguration: resourceapi.DeviceConfiguration{Opaque: &resourceapi.OpaqueDeviceConfiguration{
				Driver: driverGPU, Parameters: runtime.RawExtension{Raw: []byte(`{"sharing":{"strategy":"TimeSlicing"}}`)},
			}}}},
			reason: "FailedPrepareDynamicResources", want: "gpu.accel-cri.io takes no parameters"},
		{name: "no-class", class: "no-such-class.accel-cri.io",
			reason: "FailedScheduling", want: "no-such-class.accel-cri.io"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			claim := &resourceapi.ResourceClaim{
				ObjectMeta: metav1.ObjectMeta{Name: tc.name, Namespace: ns},
				Spec: resourceapi.ResourceClaimSpec{Devices: resourceapi.DeviceClaim{
					Requests: []resourceapi.DeviceRequest{{Name: "gpu", Exactly: &resourceapi.ExactDeviceRequest{DeviceClassName: tc.class}}},
					Config:   tc.config,
				}},
			}
			if _, err := c.Client.ResourceV1().ResourceClaims(ns).Create(ctx, claim, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: tc.name, Namespace: ns},
				Spec: corev1.PodSpec{
					RestartPolicy:                 corev1.RestartPolicyNever,
					TerminationGracePeriodSeconds: ptr.To[int64](1),
					ResourceClaims:                []corev1.PodResourceClaim{{Name: "gpu", ResourceClaimName: ptr.To(tc.name)}},
					Containers: []corev1.Container{{
						Name: "c", Image: c.Images.Busybox.Ref, Command: []string{"true"},
						Resources: corev1.ResourceRequirements{Claims: []corev1.ResourceClaim{{Name: "gpu"}}},
					}},
				},
			}
			events, err := c.Client.CoreV1().Events(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + tc.name})
			if err != nil {
				t.Fatal(err)
			}
			defer events.Stop()
			if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			var seen []string
		wait:
			for {
				select {
				case ev, ok := <-events.ResultChan():
					if !ok {
						t.Fatalf("event watch ended; events so far: %q", seen)
					}
					e, isEvent := ev.Object.(*corev1.Event)
					if !isEvent || ev.Type == watch.Deleted {
						continue
					}
					seen = append(seen, e.Reason+": "+e.Message)
					if e.Reason == tc.reason && strings.Contains(e.Message, tc.want) {
						break wait
					}
				case <-ctx.Done():
					t.Fatalf("no %s event with %q; events: %q", tc.reason, tc.want, seen)
				}
			}
			got, err := c.Client.CoreV1().Pods(ns).Get(ctx, tc.name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, cs := range got.Status.ContainerStatuses {
				if cs.State.Running != nil || cs.State.Terminated != nil {
					t.Fatalf("container %s started: %+v", cs.Name, cs.State)
				}
			}
			if err := c.Client.CoreV1().Pods(ns).Delete(ctx, tc.name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}
