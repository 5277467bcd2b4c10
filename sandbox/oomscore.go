package sandbox

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"k8s.io/klog/v2"
)

// OOMScoreRange is the range of oom_score_adj values this host lets accel-cri
// give its containers. Without CAP_SYS_RESOURCE a process can not go below
// its own current value, and runc fails with an unhelpful "can't get final
// child's PID from pipe: EOF" when asked to. containerd's CRI calls the same
// remedy restrict_oom_score_adj.
type OOMScoreRange struct {
	Min        int
	Restricted bool

	once sync.Once
}

const oomScoreAdjMin, oomScoreAdjMax = -1000, 1000

// DetectOOMScoreRange finds out, once at start, whether lowering the OOM
// score is permitted by trying it on the calling process and undoing it.
// path is /proc/self/oom_score_adj outside tests.
func DetectOOMScoreRange(path string) (*OOMScoreRange, error) {
	cur, err := readOOMScoreAdj(path)
	if err != nil {
		return nil, err
	}
	if cur == oomScoreAdjMin {
		return &OOMScoreRange{Min: oomScoreAdjMin}, nil
	}
	werr := os.WriteFile(path, []byte(strconv.Itoa(cur-1)), 0)
	if werr == nil {
		// Raising back to the old value is always permitted.
		if err := os.WriteFile(path, []byte(strconv.Itoa(cur)), 0); err != nil {
			return nil, fmt.Errorf("restore %s to %d: %w", path, cur, err)
		}
		return &OOMScoreRange{Min: oomScoreAdjMin}, nil
	}
	if errors.Is(werr, os.ErrPermission) {
		return &OOMScoreRange{Min: cur, Restricted: true}, nil
	}
	return nil, fmt.Errorf("probe %s: %w", path, werr)
}

func readOOMScoreAdj(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read oom_score_adj: %w", err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", path, err)
	}
	return v, nil
}

// Clamp returns the value to give a container that asked for want. The first
// time a value is raised, it says so in the log, once.
func (r *OOMScoreRange) Clamp(want int) int {
	v := min(max(want, oomScoreAdjMin), oomScoreAdjMax)
	if v < r.Min {
		r.once.Do(func() {
			klog.InfoS("Lowering oom_score_adj is not permitted on this host (no CAP_SYS_RESOURCE); container values are clamped", "min", r.Min, "requested", want)
		})
		v = r.Min
	}
	return v
}
