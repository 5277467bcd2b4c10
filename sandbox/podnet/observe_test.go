package podnet

import (
	"context"
	"errors"
	"testing"
	"time"

	gocni "github.com/containerd/go-cni"
)

// stubCNI answers Setup and Remove with fixed errors; other methods are
// never called by these tests (the embedded nil interface would panic).
type stubCNI struct {
	gocni.CNI
	setupErr, removeErr error
}

func (s stubCNI) Setup(context.Context, string, string, ...gocni.NamespaceOpts) (*gocni.Result, error) {
	time.Sleep(time.Millisecond)
	return &gocni.Result{}, s.setupErr
}

func (s stubCNI) Remove(context.Context, string, string, ...gocni.NamespaceOpts) error {
	return s.removeErr
}

type cniCall struct {
	op  string
	d   time.Duration
	err error
}

type recordingCNIObserver struct{ calls []cniCall }

func (r *recordingCNIObserver) ObserveCNI(op string, d time.Duration, err error) {
	r.calls = append(r.calls, cniCall{op, d, err})
}

func TestObserveCNI(t *testing.T) {
	boom := errors.New("plugin failed")
	tests := []struct {
		desc                string
		setupErr, removeErr error
	}{
		{desc: "both succeed"},
		{desc: "setup fails", setupErr: boom},
		{desc: "teardown fails", removeErr: boom},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			obs := &recordingCNIObserver{}
			c := observeCNI(stubCNI{setupErr: tc.setupErr, removeErr: tc.removeErr}, []Option{WithCNIObserver(obs)})
			if _, err := c.Setup(context.Background(), "p", "/ns"); !errors.Is(err, tc.setupErr) {
				t.Fatalf("Setup err = %v, want %v", err, tc.setupErr)
			}
			if err := c.Remove(context.Background(), "p", "/ns"); !errors.Is(err, tc.removeErr) {
				t.Fatalf("Remove err = %v, want %v", err, tc.removeErr)
			}
			if len(obs.calls) != 2 {
				t.Fatalf("observed %d calls, want 2: %+v", len(obs.calls), obs.calls)
			}
			if got := obs.calls[0]; got.op != CNISetup || got.err != tc.setupErr || got.d < time.Millisecond {
				t.Errorf("setup observed as %+v", got)
			}
			if got := obs.calls[1]; got.op != CNITeardown || got.err != tc.removeErr {
				t.Errorf("teardown observed as %+v", got)
			}
		})
	}
}

func TestObserveCNIWithoutObserverIsUnwrapped(t *testing.T) {
	in := stubCNI{}
	if got := observeCNI(in, nil); got != gocni.CNI(in) {
		t.Fatalf("observeCNI without observer wrapped the CNI: %T", got)
	}
}
