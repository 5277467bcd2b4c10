package sandbox

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestRetryShimGone(t *testing.T) {
	closed := fmt.Errorf("create task: %w", status.Error(codes.Unknown, "failed to create shim task: ttrpc: closed"))
	other := errors.New("create task: no such image")
	for _, tc := range []struct {
		desc                 string
		errs                 []error // create's results, in turn; nil after the end
		deadline             time.Duration
		wantCalls, wantClean int
		wantErr              error
	}{
		{desc: "first try", wantCalls: 1},
		{desc: "the shim went away once", errs: []error{closed}, deadline: time.Minute, wantCalls: 2, wantClean: 1},
		{desc: "another error is not retried", errs: []error{other}, deadline: time.Minute, wantCalls: 1, wantErr: other},
		{desc: "past the deadline", errs: []error{closed, closed}, deadline: -time.Second, wantCalls: 1, wantErr: closed},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			calls, cleans := 0, 0
			err := retryShimGone(t.Context(), time.Now().Add(tc.deadline), func() error {
				calls++
				if calls <= len(tc.errs) {
					return tc.errs[calls-1]
				}
				return nil
			}, func(error) error { cleans++; return nil })
			if !errors.Is(err, tc.wantErr) || calls != tc.wantCalls || cleans != tc.wantClean {
				t.Errorf("err %v, %d creates, %d cleanups; want %v, %d, %d", err, calls, cleans, tc.wantErr, tc.wantCalls, tc.wantClean)
			}
		})
	}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{ttrpc.ErrClosed, true},
		{errors.New("create task: ttrpc: closed"), true},
		{errors.New("create task: failed to start shim: start failed: failed to create TTRPC connection: dial unix /run/containerd/s/ae7f: connect: connection refused"), true},
		{errors.New("ttrpc: other"), false},
		{errors.New("dial tcp 127.0.0.1:5000: connect: connection refused"), false},
		{errors.New("failed to start shim: start failed: exec: \"containerd-shim-runc-v2\": not found"), false},
	} {
		if got := shimGone(tc.err); got != tc.want {
			t.Errorf("shimGone(%q) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
