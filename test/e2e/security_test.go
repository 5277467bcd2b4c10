package e2e

import (
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/sandbox/stdio/crilog"
	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// capBits are the capability numbers of containerd's default set
// (include/uapi/linux/capability.h).
var defaultCapBits = map[string]uint{
	"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_FOWNER": 3, "CAP_FSETID": 4, "CAP_KILL": 5,
	"CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_RAW": 13,
	"CAP_SYS_CHROOT": 18, "CAP_MKNOD": 27, "CAP_AUDIT_WRITE": 29, "CAP_SETFCAP": 31,
}

// TestSecurityDefaults checks what a request that asks for nothing gets:
// the CRI socket, the streaming server's address, a default container's
// devices, capabilities and mounts, its log file's mode, and RuntimeDefault
// seccomp against Unconfined.
func TestSecurityDefaults(t *testing.T) {
	e := startPodEnv(t)
	ctx := ctxT(t, 5*time.Minute)

	t.Run("CRI socket is 0660 root:root", func(t *testing.T) {
		fi, err := os.Stat(e.Socket)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o660 || st.Uid != 0 || st.Gid != 0 {
			t.Fatalf("socket %s: %v uid %d gid %d, want socket 0660 root:root", e.Socket, fi.Mode(), st.Uid, st.Gid)
		}
	})

	podID, pod := e.runPod(t, "sec")
	id := e.RunContainer(t, podID, pod, e.busybox("default", "sleep 3600"))
	execOut := func(t *testing.T, cmd ...string) string {
		t.Helper()
		out, stderr, err := e.Runtime.ExecSync(ctx, id, cmd, 30*time.Second)
		if err != nil {
			t.Fatalf("%q: %v\n%s", cmd, err, stderr)
		}
		return string(out)
	}

	t.Run("streaming server on loopback", func(t *testing.T) {
		resp, err := e.Runtime.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"true"}, Stdout: true})
		if err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(resp.Url)
		if err != nil {
			t.Fatal(err)
		}
		if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
			t.Fatalf("streaming URL %s is not on loopback", resp.Url)
		}
	})

	t.Run("no capability beyond the default set", func(t *testing.T) {
		var want uint64
		for _, bit := range defaultCapBits {
			want |= 1 << bit
		}
		status := execOut(t, "cat", "/proc/1/status")
		// The bounding set is exactly the default set; the effective and
		// permitted sets hold no more (they are empty when the image's
		// user is not root).
		for _, field := range []string{"CapBnd", "CapEff", "CapPrm"} {
			got, ok := statusHex(status, field)
			if !ok {
				t.Fatalf("no %s in /proc/1/status:\n%s", field, status)
			}
			if extra := got &^ want; extra != 0 || (field == "CapBnd" && got != want) {
				t.Errorf("%s = %#x, want %#x (extra %#x)", field, got, want, extra)
			}
		}
		if got, _ := statusHex(status, "CapAmb"); got != 0 {
			t.Errorf("CapAmb = %#x, want 0", got)
		}
	})

	t.Run("no device node beyond the OCI defaults", func(t *testing.T) {
		// runc's default devices plus the console pty of /dev/pts.
		allowed := []string{"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/ptmx", "/dev/pts/ptmx"}
		nodes := strings.Fields(execOut(t, "find", "/dev", "-type", "c", "-o", "-type", "b"))
		if len(nodes) == 0 {
			t.Fatal("no device nodes found at all")
		}
		for _, n := range nodes {
			if !slices.Contains(allowed, n) {
				t.Errorf("device node %s not asked for (found %v)", n, nodes)
			}
		}
	})

	t.Run("no host path mount beyond the pod files", func(t *testing.T) {
		mounts := execOut(t, "cat", "/proc/1/mountinfo")
		for _, l := range strings.Split(strings.TrimSpace(mounts), "\n") {
			f := strings.Fields(l)
			if len(f) < 5 {
				t.Fatalf("mountinfo line %q", l)
			}
			mp := f[4]
			switch {
			case slices.Contains([]string{"/", "/proc", "/dev", "/dev/pts", "/dev/mqueue", "/dev/shm", "/sys", "/sys/fs/cgroup", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf"}, mp):
			case strings.HasPrefix(mp, "/sys/fs/cgroup/"): // cgroup v1 controllers
			case strings.HasPrefix(mp, "/proc/"), mp == "/sys/firmware", mp == "/sys/devices/virtual/powercap":
				// runc's masked and read-only paths
			default:
				t.Errorf("unexpected mount %s: %s", mp, l)
			}
		}
	})

	t.Run("container log file is 0640", func(t *testing.T) {
		fi, err := os.Stat(logPath(pod, e.busybox("default", "")))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != crilog.FileMode || crilog.FileMode != 0o640 {
			t.Fatalf("log file mode %v, want 0640", fi.Mode())
		}
	})

	// unshare(CLONE_NEWUSER) needs no capability (user.max_user_namespaces
	// is positive here), but containerd's default profile allows unshare
	// only with CAP_SYS_ADMIN: EPERM under RuntimeDefault, success when
	// Unconfined, with the same capabilities.
	t.Run("RuntimeDefault seccomp blocks unshare, Unconfined allows it", func(t *testing.T) {
		if b, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err != nil || strings.TrimSpace(string(b)) == "0" {
			t.Fatalf("user namespaces are disabled on this host (%q, %v): the Unconfined half cannot work", b, err)
		}
		for _, tc := range []struct {
			name    string
			profile runtimeapi.SecurityProfile_ProfileType
			want    string
		}{
			{"seccomp-default", runtimeapi.SecurityProfile_RuntimeDefault, "Operation not permitted"},
			{"seccomp-unconfined", runtimeapi.SecurityProfile_Unconfined, "rc=0"},
		} {
			c := e.busybox(tc.name, "unshare -U true 2>&1; echo rc=$?")
			c.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: tc.profile}
			cid := e.RunContainer(t, podID, pod, c)
			e.WaitContainer(t, cid, runtimeapi.ContainerState_CONTAINER_EXITED, time.Minute)
			log := framework.LogContent(t, logPath(pod, c))
			if !strings.Contains(log, tc.want) {
				t.Errorf("%s: log %q, want %q", tc.name, log, tc.want)
			}
			if tc.profile == runtimeapi.SecurityProfile_RuntimeDefault && strings.Contains(log, "rc=0") {
				t.Errorf("%s: unshare succeeded under RuntimeDefault: %q", tc.name, log)
			}
		}
	})
}

// statusHex reads a hex field ("CapEff:\t00000000a80425fb") of
// /proc/<pid>/status.
func statusHex(status, field string) (uint64, bool) {
	for _, l := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return n, err == nil
		}
	}
	return 0, false
}
