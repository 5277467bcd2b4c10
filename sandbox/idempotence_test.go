package sandbox

import (
	"testing"

	"github.com/containerd/errdefs"
)

// Whether stopping or removing what does not exist is a success is the CRI
// edge's to decide (cri.ignoreNotFound, the CRI contract's idempotence):
// here an unknown pod or container is NotFound, as for every other call.
func TestStopRemoveUnknownIsNotFound(t *testing.T) {
	r := &Runtime{store: newStore(t.TempDir()), events: newBroadcaster()}
	ctx := t.Context()
	id := "0123456789abcdef"
	for name, err := range map[string]error{
		"StopPod":         r.StopPod(ctx, id),
		"RemovePod":       r.RemovePod(ctx, id),
		"StopContainer":   r.StopContainer(ctx, id, 0),
		"RemoveContainer": r.RemoveContainer(ctx, id),
	} {
		if !errdefs.IsNotFound(err) {
			t.Errorf("%s of an unknown id: %v, want NotFound", name, err)
		}
	}
}
