package sandbox

import (
	"syscall"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestOCISignalName(t *testing.T) {
	for _, tc := range []struct {
		in   runtimeapi.Signal
		want string
	}{
		{runtimeapi.Signal_SIGNAL_SIGTERM, "SIGTERM"},
		{runtimeapi.Signal_SIGNAL_SIGKILL, "SIGKILL"},
		{runtimeapi.Signal_SIGNAL_SIGRTMIN, "SIGRTMIN"},
		{runtimeapi.Signal_SIGNAL_SIGRTMINPLUS1, "SIGRTMIN+1"},
		{runtimeapi.Signal_SIGNAL_SIGRTMAXMINUS14, "SIGRTMAX-14"},
		{runtimeapi.Signal_SIGNAL_SIGRTMAX, "SIGRTMAX"},
	} {
		if got := ociSignalName(tc.in); got != tc.want {
			t.Errorf("ociSignalName(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseSignal(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    syscall.Signal
		wantErr bool
	}{
		{in: "SIGTERM", want: syscall.SIGTERM},
		{in: "TERM", want: syscall.SIGTERM},
		{in: "9", want: syscall.SIGKILL},
		{in: "SIGRTMIN+1", want: 35},
		{in: "SIGRTMINPLUS1", want: 35},         // a pre-1.37 checkpoint
		{in: "SIGNAL_SIGRTMAXMINUS1", want: 63}, // the 1.37 enum name
		{in: "SIGNAL_SIGQUIT", want: syscall.SIGQUIT},
		{in: "SIGNOPE", wantErr: true},
		{in: "", wantErr: true},
	} {
		got, err := parseSignal(tc.in)
		if (err != nil) != tc.wantErr || (!tc.wantErr && got != tc.want) {
			t.Errorf("parseSignal(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

// Every CRI signal survives the round trip through the name a container
// records and the value ContainerStatus reports, up to the enum's aliases.
func TestCRISignalRoundTrip(t *testing.T) {
	aliases := map[runtimeapi.Signal]runtimeapi.Signal{
		runtimeapi.Signal_SIGNAL_SIGIOT:  runtimeapi.Signal_SIGNAL_SIGABRT,
		runtimeapi.Signal_SIGNAL_SIGCLD:  runtimeapi.Signal_SIGNAL_SIGCHLD,
		runtimeapi.Signal_SIGNAL_SIGPOLL: runtimeapi.Signal_SIGNAL_SIGIO,
	}
	for v := range runtimeapi.Signal_name {
		in := runtimeapi.Signal(v)
		if in == runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
			continue
		}
		want := in
		if a, ok := aliases[in]; ok {
			want = a
		}
		if got := criSignal(ociSignalName(in)); got != want {
			t.Errorf("%v: round trip gives %v, want %v", in, got, want)
		}
	}
	if got := criSignal(""); got != runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
		t.Errorf("no signal: %v, want RUNTIME_DEFAULT", got)
	}
}
