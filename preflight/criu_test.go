package preflight

import (
	"context"
	"strings"
	"testing"

	"github.com/accel-cri/accel-cri/config"
)

func TestCheckCRIU(t *testing.T) {
	const bin = "/usr/local/sbin/criu"
	for _, tc := range []struct {
		desc   string
		host   func(*fakeHost)
		cfg    func(*config.Config)
		status Status
		detail string
	}{
		{desc: "4.1.1 that passes its check", status: OK, detail: bin + " is CRIU 4.1.1; criu check: Looks good."},
		{desc: "missing", host: func(h *fakeHost) { delete(h.path, bin) }, status: Warn, detail: "not found: checkpoint and restore are unavailable"},
		{desc: "bookworm's 3.17", host: func(h *fakeHost) { h.cmds[bin+" --version"] = "Version: 3.17.1\n" }, status: Warn, detail: "CRIU 3.17.1; 4.x or newer is needed"},
		{desc: "no version", host: func(h *fakeHost) { h.cmds[bin+" --version"] = "hello\n" }, status: Warn, detail: "printed no version"},
		{desc: "version fails", host: func(h *fakeHost) { delete(h.cmds, bin+" --version") }, status: Warn, detail: "--version: exit status 1"},
		{desc: "check fails", host: func(h *fakeHost) { delete(h.cmds, bin+" check") }, status: Warn, detail: "but `criu check` fails"},
		{desc: "a name in PATH", host: func(h *fakeHost) {
			h.path["criu"] = "/usr/sbin/criu"
			h.cmds["/usr/sbin/criu --version"] = "Version: 4.2\nGitID: v4.2\n"
			h.cmds["/usr/sbin/criu check"] = "Looks good.\n"
		}, cfg: func(c *config.Config) { c.Checkpoint.CRIUPath = "criu" }, status: OK, detail: "/usr/sbin/criu is CRIU 4.2;"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			h := goodHost()
			if tc.host != nil {
				tc.host(h)
			}
			cfg := config.Default()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			rs := checkCRIU(context.Background(), &checker{cfg: cfg, host: h})
			if len(rs) != 1 || rs[0].Status != tc.status || !strings.Contains(rs[0].Detail, tc.detail) || (tc.status != OK && rs[0].Fix == "") {
				t.Errorf("%+v, want %s containing %q", rs, tc.status, tc.detail)
			}
		})
	}
}
