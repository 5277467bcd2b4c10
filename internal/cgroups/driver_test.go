package cgroups

import "testing"

func TestResolveDriver(t *testing.T) {
	for _, tc := range []struct {
		desc, configured, comm string
		want                   string
	}{
		{desc: "auto systemd", configured: "auto", comm: "systemd\n", want: DriverSystemd},
		{desc: "auto other init", configured: "auto", comm: "init\n", want: DriverCgroupfs},
		{desc: "auto unreadable", configured: "auto", want: DriverCgroupfs},
		{desc: "explicit cgroupfs on systemd", configured: "cgroupfs", comm: "systemd\n", want: DriverCgroupfs},
		{desc: "explicit systemd", configured: "systemd", comm: "init\n", want: DriverSystemd},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			files := mapFiles{}
			if tc.comm != "" {
				files = fakeHost("", map[string]string{"/proc/1/comm": tc.comm})
			}
			if got := ResolveDriver(tc.configured, SystemdPID1(files)); got != tc.want {
				t.Errorf("ResolveDriver = %q, want %q", got, tc.want)
			}
		})
	}
}
