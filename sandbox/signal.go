package sandbox

import (
	"strings"
	"syscall"

	"github.com/moby/sys/signal"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ociSignalName turns a CRI Signal into the name images and OCI tools use:
// Signal_SIGNAL_SIGTERM is "SIGTERM", Signal_SIGNAL_SIGRTMINPLUS1 is
// "SIGRTMIN+1". CRI 1.37 prefixed every value with SIGNAL_; the
// PLUS/MINUS spellings are the enum's, not the kernel's.
func ociSignalName(s runtimeapi.Signal) string {
	n := strings.TrimPrefix(s.String(), "SIGNAL_")
	n = strings.Replace(n, "RTMINPLUS", "RTMIN+", 1)
	return strings.Replace(n, "RTMAXMINUS", "RTMAX-", 1)
}

// parseSignal reads a stop signal as recorded for a container: an OCI name
// ("SIGTERM", "TERM", "SIGRTMIN+1"), a number, or a CRI enum name from a
// checkpoint written before 1.37 ("SIGRTMINPLUS1").
func parseSignal(name string) (syscall.Signal, error) {
	s, err := signal.ParseSignal(name)
	if err == nil {
		return s, nil
	}
	if v, ok := runtimeapi.Signal_value["SIGNAL_"+strings.TrimPrefix(name, "SIGNAL_")]; ok {
		if s, err2 := signal.ParseSignal(ociSignalName(runtimeapi.Signal(v))); err2 == nil {
			return s, nil
		}
	}
	return s, err
}

// criSignals maps a signal number to its CRI value; where the enum has two
// names for one number (SIGABRT and SIGIOT, SIGCHLD and SIGCLD, SIGIO and
// SIGPOLL) the first, canonical one.
var criSignals = func() map[syscall.Signal]runtimeapi.Signal {
	m := make(map[syscall.Signal]runtimeapi.Signal, len(runtimeapi.Signal_name))
	for v := int32(1); v < int32(len(runtimeapi.Signal_name)); v++ {
		sig, err := signal.ParseSignal(ociSignalName(runtimeapi.Signal(v)))
		if err != nil {
			continue
		}
		if _, ok := m[sig]; !ok {
			m[sig] = runtimeapi.Signal(v)
		}
	}
	return m
}()

// criSignal is the CRI value of a recorded stop signal; RUNTIME_DEFAULT when
// it has none.
func criSignal(name string) runtimeapi.Signal {
	s, err := parseSignal(name)
	if err != nil {
		return runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT
	}
	return criSignals[s]
}
