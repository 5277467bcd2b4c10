package preflight

import (
	"context"
	"errors"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// criuVersion matches `criu --version`'s "Version: 4.1.1".
var criuVersion = regexp.MustCompile(`(?m)^Version:\s*(\d+)\.(\d+)(?:\.(\d+))?`)

// criuMinMajor is the oldest CRIU that works on this machine class:
// bookworm's 3.17 fails `criu check` on kernels from 6.13 on.
const criuMinMajor = 4

// checkCRIU: the CRIU of [checkpoint] criu_path is there, new enough, and
// `criu check` passes on this kernel. Without it only checkpoint and
// restore fail, so every problem is a WARN.
func checkCRIU(ctx context.Context, c *checker) []Result {
	const item = "criu"
	const build = "run hack/build-criu.sh (builds CRIU 4.1.1 and installs it as /usr/local/sbin/criu), or set [checkpoint] criu_path"
	bin, err := c.host.LookPath(c.cfg.Checkpoint.CRIUPath)
	if err != nil {
		return []Result{warn(item, build, "criu_path %q not found: checkpoint and restore are unavailable", c.cfg.Checkpoint.CRIUPath)}
	}
	out, err := c.run(ctx, bin, "--version")
	if err != nil {
		return []Result{warn(item, build, "%s --version: %v", bin, commandError(err))}
	}
	m := criuVersion.FindStringSubmatch(string(out))
	if m == nil {
		return []Result{warn(item, build, "%s --version printed no version: %q", bin, firstLine(out))}
	}
	version := m[1] + "." + m[2]
	if m[3] != "" {
		version += "." + m[3]
	}
	if major, _ := strconv.Atoi(m[1]); major < criuMinMajor {
		return []Result{warn(item, build, "%s is CRIU %s; %d.x or newer is needed (3.x fails on kernels from 6.13 on)", bin, version, criuMinMajor)}
	}
	out, err = c.run(ctx, bin, "check")
	if err != nil {
		return []Result{warn(item, "see `"+bin+" check` for the kernel feature it misses",
			"%s is CRIU %s, but `criu check` fails: %v", bin, version, commandError(err))}
	}
	return []Result{ok(item, "%s is CRIU %s; criu check: %s", bin, version, firstLine(out))}
}

// commandError is err with the command's standard error, when it has one.
func commandError(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if msg := strings.TrimSpace(string(ee.Stderr)); msg != "" {
			return err.Error() + ": " + lastLine(msg)
		}
	}
	return err.Error()
}

func lastLine(s string) string {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
