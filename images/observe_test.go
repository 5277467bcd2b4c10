package images

import (
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

type observedPull struct {
	ref  string
	size uint64
	d    time.Duration
	err  error
}

type recordingPullObserver struct {
	mu    sync.Mutex
	pulls []observedPull
}

func (r *recordingPullObserver) ObservePull(ref string, size uint64, d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pulls = append(r.pulls, observedPull{ref, size, d, err})
}

func TestPullObserver(t *testing.T) {
	e := newEnv(t)
	reg := startRegistry(t, nil)
	p := reg.push("test/observed", "1", randomImage(t, 64<<10, 1))
	obs := &recordingPullObserver{}
	s := e.service(t, WithObserver(obs))

	tests := []struct {
		desc     string
		ref      string
		wantSize uint64
		wantErr  func(error) bool
	}{
		{desc: "success reports the image size", ref: reg.host + "/test/observed:1", wantSize: uint64(p.size)},
		{desc: "unknown image reports NotFound", ref: reg.host + "/test/absent:1", wantErr: errdefs.IsNotFound},
		{desc: "malformed reference reports InvalidArgument", ref: "a b", wantErr: errdefs.IsInvalidArgument},
	}
	for i, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := s.Pull(e.ctx, tc.ref, nil)
			obs.mu.Lock()
			defer obs.mu.Unlock()
			if len(obs.pulls) != i+1 {
				t.Fatalf("observer saw %d pulls, want %d", len(obs.pulls), i+1)
			}
			got := obs.pulls[i]
			if got.ref != tc.ref || got.size != tc.wantSize || got.d <= 0 || got.err != err {
				t.Fatalf("observed %+v; pull returned %v; want ref %q size %d", got, err, tc.ref, tc.wantSize)
			}
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !tc.wantErr(err) {
				t.Fatalf("Pull err = %v", err)
			}
		})
	}
}
