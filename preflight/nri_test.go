package preflight

import (
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/accel-cri/accel-cri/config"
)

func TestCheckNRI(t *testing.T) {
	const sock = "run/accel-cri/nri.sock"
	for _, tc := range []struct {
		desc   string
		host   func(*fakeHost)
		cfg    func(*config.Config)
		status Status
		detail string
	}{
		{desc: "default: nothing there yet", status: OK, detail: "plugins connect on /run/accel-cri/nri.sock; no plugins to launch in /opt/nri/plugins"},
		{desc: "off", cfg: func(c *config.Config) { c.NRI.Enable = false }, status: OK, detail: "off"},
		{desc: "plugins to launch", host: func(h *fakeHost) {
			h.fsys["opt/nri/plugins/10-topology"] = exe()
			h.fsys["opt/nri/plugins/90-logger"] = exe()
			h.fsys["opt/nri/plugins/README"] = &fstest.MapFile{Mode: 0o644}
		}, status: OK, detail: "launches 10-topology, 90-logger from /opt/nri/plugins"},
		{desc: "an executable NRI cannot name", host: func(h *fakeHost) { h.fsys["opt/nri/plugins/topology"] = exe() },
			status: Fail, detail: "cannot name: topology"},
		{desc: "stale socket of an earlier run", host: func(h *fakeHost) { h.fsys[sock] = &fstest.MapFile{Mode: fs.ModeSocket} },
			status: OK, detail: "plugins connect on"},
		{desc: "socket served by a process", host: func(h *fakeHost) {
			h.fsys[sock] = &fstest.MapFile{Mode: fs.ModeSocket}
			h.answering = map[string]bool{"/" + sock: true}
		}, status: Warn, detail: "answers"},
		{desc: "not a socket", host: func(h *fakeHost) { h.fsys[sock] = &fstest.MapFile{Data: []byte("x")} },
			status: Fail, detail: "is not a socket"},
		{desc: "no external plugins: the socket does not matter", host: func(h *fakeHost) { h.fsys[sock] = &fstest.MapFile{Data: []byte("x")} },
			cfg: func(c *config.Config) { c.NRI.ExternalPlugins = false }, status: OK, detail: "no socket"},
		{desc: "socket_path under the state dir follows --state", cfg: func(c *config.Config) { c.State = "/var/run/acri" },
			status: OK, detail: "/var/run/acri/nri.sock"},
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
			r, ok := find(run(h, cfg), "nri")
			if !ok {
				t.Fatal("no nri result")
			}
			if r.Status != tc.status || !strings.Contains(r.Detail, tc.detail) {
				t.Errorf("nri = [%s] %s; want [%s] containing %q", r.Status, r.Detail, tc.status, tc.detail)
			}
			if r.Status != OK && r.Fix == "" {
				t.Errorf("nri is %s without a fix", r.Status)
			}
		})
	}
}
