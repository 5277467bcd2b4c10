//go:build cluster

package cluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// The streaming cases: kubectl exec, attach, cp, port-forward and logs, as
// a user runs them, through the API server and the kubelet to accel-cri's
// streaming server (exec, attach, port-forward) and its CRI log files
// (logs). Long-running kubectl processes are started here and stopped by
// their own pid; kubectl under a TTY gets a pseudo-terminal of its own.

// testExec: kubectl exec without a TTY keeps stdout and stderr apart,
// passes the command's exit code on, runs as the container's user in its
// environment, and pipes stdin in to its EOF, which also comes when the
// client dies.
func testExec(t *testing.T, c *Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ns := c.Namespace(t, "exec")
	runPod(t, c, ctx, busyboxPod(c, ns, "shell", "exec sleep 100000"))

	r := kubectlRun(ctx, c, nil, "-n", ns, "exec", "shell", "--", "sh", "-c", "echo out-1; echo err-1 >&2; echo out-2; echo err-2 >&2")
	if r.err != nil || r.stdout != "out-1\nout-2\n" || r.stderr != "err-1\nerr-2\n" {
		t.Errorf("exec writing to both streams: stdout %q, stderr %q, %v; want stdout \"out-1\\nout-2\\n\", stderr \"err-1\\nerr-2\\n\"", r.stdout, r.stderr, r.err)
	}

	r = kubectlRun(ctx, c, nil, "-n", ns, "exec", "shell", "--", "sh", "-c", "echo before-exit; exit 7")
	if r.code != 7 || r.stdout != "before-exit\n" || !strings.Contains(r.stderr, "exit code 7") {
		t.Errorf("exec of sh -c 'exit 7': kubectl exit status %d (%v), stdout %q, stderr %q; want status 7, the output, and the code on stderr", r.code, r.err, r.stdout, r.stderr)
	}

	// Both streams at volume: the same 2 MiB on each.
	r = kubectlRun(ctx, c, nil, "-n", ns, "exec", "shell", "--", "sh", "-c", "head -c 2097152 /dev/urandom > /tmp/r; cat /tmp/r; cat /tmp/r >&2; sha256sum < /tmp/r >&2")
	if sum := sha256.Sum256([]byte(r.stdout)); r.err != nil || len(r.stdout) != 2<<20 || r.stderr != r.stdout+hex.EncodeToString(sum[:])+"  -\n" {
		t.Errorf("exec writing 2 MiB to each stream: %d bytes on stdout, %d on stderr (the same and the file's: %v), %v", len(r.stdout), len(r.stderr), strings.HasPrefix(r.stderr, r.stdout), r.err)
	}

	// Without -i the command's stdin is empty: cat ends at once.
	r = kubectlRun(ctx, c, nil, "-n", ns, "exec", "shell", "--", "cat")
	if r.err != nil || r.stdout != "" {
		t.Errorf("exec of cat without stdin: stdout %q, stderr %q, %v; want no output and status 0", r.stdout, r.stderr, r.err)
	}

	// -i: the container reads stdin to its EOF, here 3 MiB of random
	// bytes, hashed inside and sent back whole.
	data := randomBytes(t, 3<<20)
	sum := sha256.Sum256(data)
	r = kubectlRun(ctx, c, data, "-n", ns, "exec", "-i", "shell", "--", "sha256sum")
	if want := hex.EncodeToString(sum[:]) + "  -\n"; r.err != nil || r.stdout != want {
		t.Errorf("exec -i sha256sum of 3 MiB: %q, stderr %q, %v; want %q", r.stdout, r.stderr, r.err, want)
	}
	r = kubectlRun(ctx, c, data, "-n", ns, "exec", "-i", "shell", "--", "cat")
	if r.err != nil || r.stdout != string(data) {
		t.Errorf("exec -i cat of 3 MiB: %d bytes back (equal: %v), stderr %q, %v", len(r.stdout), r.stdout == string(data), r.stderr, r.err)
	}
	r = kubectlRun(ctx, c, []byte("one\ntwo\n"), "-n", ns, "exec", "-i", "shell", "--", "sh", "-c", `while read -r l; do echo "<$l>"; echo "[$l]" >&2; done; echo eof`)
	if r.err != nil || r.stdout != "<one>\n<two>\neof\n" || r.stderr != "[one]\n[two]\n" {
		t.Errorf("exec -i line by line: stdout %q, stderr %q, %v", r.stdout, r.stderr, r.err)
	}

	// The command runs as the container's process does: its user, groups,
	// environment and working directory.
	app := busyboxPod(c, ns, "app", "exec sleep 100000")
	app.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](1000), RunAsGroup: ptr.To[int64](1000), SupplementalGroups: []int64{4242}}
	app.Spec.Containers[0].WorkingDir = "/home/app"
	app.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "STREAM_CASE", Value: "exec-env"}}
	runPod(t, c, ctx, app)
	r = kubectlRun(ctx, c, nil, "-n", ns, "exec", "app", "--", "sh", "-c", `echo "$(id -u) $(id -g) $(id -G) $PWD $STREAM_CASE"`)
	if want := "1000 1000 1000 4242 /home/app exec-env\n"; r.err != nil || r.stdout != want {
		t.Errorf("exec in a container of user 1000: %q, stderr %q, %v; want %q", r.stdout, r.stderr, r.err, want)
	}

	// A client that dies mid-session: the connection's end is the end of
	// the command's stdin, and a command reading it to its end finishes.
	in, inW := pipe(t)
	k := startKubectl(t, c, kubectlIO{stdin: in}, "-n", ns, "exec", "-i", "shell", "--", "sh", "-c", "echo started; cat > /dev/null; echo ended > /tmp/stdin-ended")
	fmt.Fprintln(inW, "some input")
	k.expectLine(t, regexp.MustCompile(`^started$`))
	k.kill(t)
	waitKubectl(t, c, ctx, "ended", "-n", ns, "exec", "shell", "--", "cat", "/tmp/stdin-ended")
}

// testExecTTY: kubectl exec -it under a terminal: the container's shell
// has a TTY of the terminal's size and follows its resizes, echoes what is
// typed, gets ^C as a signal, and its exit status ends kubectl's; when
// the client dies, the command on the terminal ends.
func testExecTTY(t *testing.T, c *Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ns := c.Namespace(t, "exec-tty")
	runPod(t, c, ctx, busyboxPod(c, ns, "shell", "exec sleep 100000"))

	term := openTerminal(t, 40, 100)
	k := startKubectl(t, c, kubectlIO{term: term}, "-n", ns, "exec", "-it", "shell", "--", "sh")
	// busybox's shell asks the terminal where the cursor is (ESC [6n) after
	// its prompt; nothing needs to answer.
	term.expect(t, 0, prompt)
	if tio, err := term.termios(); err != nil || tio.Lflag&(unix.ECHO|unix.ICANON) != 0 {
		t.Errorf("kubectl left its terminal in cooked mode (lflag %#x, %v): it did not take it for a terminal", tio.Lflag, err)
	}

	at := term.send(t, "tty\r")
	m, at := term.expectMatch(t, at, regexp.MustCompile(`\r\n(/dev/pts/\d+)\r\n`))
	t.Logf("the container's stdin is %s", m[1])

	at = term.send(t, "stty size\r")
	m, at = term.expectMatch(t, at, regexp.MustCompile(`\r\n(\d+ \d+)\r\n`))
	if m[1] != "40 100" {
		t.Errorf("stty size in the container = %q, want the terminal's 40 100", m[1])
	}

	// What is typed comes back as the remote terminal echoes it, with the
	// command's output after it.
	at = term.send(t, "echo typed-$((6*7))\r")
	at = term.expect(t, at, regexp.MustCompile(regexp.QuoteMeta("echo typed-$((6*7))")+`\r\ntyped-42\r\n`))

	// A resize of the terminal reaches the container's TTY (kubectl sends
	// it on SIGWINCH, asynchronously: ask until it shows).
	var size string
	if size, at = term.resizeSeen(t, at, 50, 120); size != "50 120" {
		t.Errorf("stty size after resizing the terminal to 50x120 = %q", size)
	}

	// Larger output through the TTY arrives whole and in order.
	at = term.send(t, "seq 1 3000; echo seq-$((1+1))-done\r")
	m, at = term.expectMatch(t, at, regexp.MustCompile(`(?s)\r\n(1\r\n.*)seq-2-done\r\n`))
	if got, want := strings.Fields(m[1]), seq(1, 3000); !slices.Equal(got, want) {
		t.Errorf("seq 1 3000 through the TTY: %d lines, not 1..3000 in order", len(got))
	}

	// ^C is a character to kubectl's raw terminal and SIGINT to the
	// container's foreground process: the shell's prompt comes back.
	at = term.send(t, "echo sleeping-$((1+1)); sleep 100000\r")
	at = term.expect(t, at, regexp.MustCompile(`\r\nsleeping-2\r\n`))
	interrupted := false
	for range 10 {
		from := term.send(t, "\x03echo after-int-$((1+2))\r")
		if next, ok := term.wait(from, regexp.MustCompile(`\r\nafter-int-3\r\n`), 5*time.Second); ok {
			at, interrupted = next, true
			break
		}
	}
	if !interrupted {
		t.Fatalf("^C did not end sleep in the container's shell:\n%q", term.since(at))
	}

	term.send(t, "exit 3\r")
	if code := k.waitExit(t, 2*time.Minute); code != 3 {
		t.Errorf("kubectl exec -it after `exit 3`: exit status %d, want 3\n%q", code, term.since(0))
	}
	if out := term.since(0); strings.Contains(out, "Unable to use a TTY") {
		t.Errorf("kubectl did not use the terminal: %q", out)
	}

	// A client that dies mid-session: the terminal hangs up and the
	// command on it ends.
	term = openTerminal(t, 24, 80)
	k = startKubectl(t, c, kubectlIO{term: term}, "-n", ns, "exec", "-it", "shell", "--", "sh", "-c", "echo tty-started; exec sleep 77777")
	term.expect(t, 0, regexp.MustCompile(`tty-started\r\n`))
	const sleeping = `ps -o args | grep -q "^sleep 77777" && echo present || echo absent`
	waitKubectl(t, c, ctx, "present", "-n", ns, "exec", "shell", "--", "sh", "-c", sleeping)
	k.kill(t)
	waitKubectl(t, c, ctx, "absent", "-n", ns, "exec", "shell", "--", "sh", "-c", sleeping)
}

// testAttach: kubectl attach -i to a container reading stdin: lines sent
// come back as its output (also in its log, and to a client attached
// without stdin), a client closing its stdin detaches without closing the
// container's, and with stdinOnce that EOF reaches the container. kubectl
// attach -i gets a 3 MiB burst of output whole; one that does not read a
// 128 MiB burst is detached and says so. kubectl attach -it to a
// TTY container under a terminal: the shell runs what is typed, in the
// terminal's size as it changes, and keeps running after kubectl is gone.
func testAttach(t *testing.T, c *Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ns := c.Namespace(t, "attach")
	const echoLoop = `echo attach-ready; while read -r l; do echo "got: $l"; done; echo stdin-closed`
	echo := busyboxPod(c, ns, "echo", echoLoop)
	echo.Spec.Containers[0].Stdin = true
	runPod(t, c, ctx, echo)
	waitKubectl(t, c, ctx, "attach-ready", "-n", ns, "logs", "echo")

	// First client: its line comes back; its stdin ends, which ends its
	// session (kubectl exits) but leaves the container's stdin open.
	in, inW := pipe(t)
	k := startKubectl(t, c, kubectlIO{stdin: in}, "-n", ns, "attach", "-i", "echo")
	fmt.Fprintln(inW, "hello-1")
	k.expectLine(t, regexp.MustCompile(`^got: hello-1$`))
	inW.Close()
	if code := k.waitExit(t, time.Minute); code != 0 {
		t.Errorf("kubectl attach -i after its stdin ended: exit status %d, want 0; stderr %q", code, k.stderr.String())
	}

	// Second client, with a third attached without stdin: the container
	// still reads, and both clients get all its output from the moment
	// they attached. The third shows nothing when its session starts:
	// ping until it sees one.
	watcher := startKubectl(t, c, kubectlIO{}, "-n", ns, "attach", "echo")
	in, inW = pipe(t)
	k = startKubectl(t, c, kubectlIO{stdin: in}, "-n", ns, "attach", "-i", "echo")
	watching := false
	for i := 0; i < 30 && !watching; i++ {
		fmt.Fprintf(inW, "ping-%d\n", i)
		_, watching = watcher.waitLine(regexp.MustCompile(`^got: ping-\d+$`), 2*time.Second)
	}
	if !watching {
		t.Fatalf("kubectl attach without stdin shows none of the container's output; stderr %q", watcher.stderr.String())
	}
	fmt.Fprintln(inW, "hello-2")
	fmt.Fprintln(inW, "hello-3")
	for _, client := range []*bgKubectl{k, watcher} {
		client.expectLine(t, regexp.MustCompile(`^got: hello-2$`))
		client.expectLine(t, regexp.MustCompile(`^got: hello-3$`))
	}
	k.terminate(t)
	watcher.terminate(t)
	waitKubectl(t, c, ctx, "got: hello-3", "-n", ns, "logs", "echo")
	if logs, _ := c.Kubectl(ctx, "-n", ns, "logs", "echo"); !strings.HasPrefix(logs, "attach-ready\ngot: hello-1\ngot: ping-0\n") || !strings.HasSuffix(logs, "\ngot: hello-2\ngot: hello-3\n") {
		t.Errorf("kubectl logs echo = %q, want attach-ready, hello-1, the pings, hello-2 and hello-3", logs)
	}
	expectRunning(t, c, ctx, ns, "echo")

	// stdinOnce: the first client's EOF closes the container's stdin; the
	// container ends and so does kubectl.
	once := busyboxPod(c, ns, "once", echoLoop)
	once.Spec.RestartPolicy = corev1.RestartPolicyNever
	once.Spec.Containers[0].Stdin, once.Spec.Containers[0].StdinOnce = true, true
	runPod(t, c, ctx, once)
	in, inW = pipe(t)
	k = startKubectl(t, c, kubectlIO{stdin: in}, "-n", ns, "attach", "-i", "once")
	fmt.Fprintln(inW, "only")
	k.expectLine(t, regexp.MustCompile(`^got: only$`))
	inW.Close()
	k.expectLine(t, regexp.MustCompile(`^stdin-closed$`))
	if code := k.waitExit(t, time.Minute); code != 0 {
		t.Errorf("kubectl attach -i to a stdinOnce container after it exited: exit status %d, want 0; stderr %q", code, k.stderr.String())
	}

	// An attached client gets a burst of output whole: 3 MiB at once, in
	// lines of 1 KiB (accel-cri lets a client fall up to 4 MiB behind the
	// output before it detaches it).
	burst := busyboxPod(c, ns, "burst", `line=$(head -c 1023 /dev/zero | tr '\0' x); while read -r n; do yes "$line" | head -n $n; echo "burst-done $n"; touch /tmp/burst-done-$n; done`)
	burst.Spec.Containers[0].Stdin = true
	runPod(t, c, ctx, burst)
	in, inW = pipe(t)
	k = startKubectl(t, c, kubectlIO{stdin: in}, "-n", ns, "attach", "-i", "burst")
	fmt.Fprintln(inW, "3072")
	full := regexp.MustCompile(`^x{1000}x{23}$|^burst-done \d+$`)
	for n := 0; ; n++ {
		if m := k.expectLine(t, full); strings.HasPrefix(m[0], "burst-done") {
			if n != 3072 {
				t.Errorf("kubectl attach got %d lines of the burst, want 3072", n)
			}
			break
		}
	}
	k.terminate(t)

	// A client that does not read while 128 MiB are written falls more
	// than 4 MiB behind (the buffers between the container and this test
	// held about 20 MiB): accel-cri detaches it, and kubectl says so.
	in, inW = pipe(t)
	k = startKubectl(t, c, kubectlIO{stdin: in}, "-n", ns, "attach", "-i", "burst")
	fmt.Fprintln(inW, "131072")
	// The container says when it has written it all in a file: its log
	// may have been rotated by the kubelet right after the burst, leaving
	// the last line in a file kubectl logs no longer reads (CI, 1 run in 2).
	waitKubectlTimeout(t, c, ctx, 3*time.Minute, "burst-done-131072", "-n", ns, "exec", "burst", "--", "ls", "/tmp")
	n := 0
	for l := range k.lines {
		if n++; strings.HasPrefix(l, "burst-done") {
			t.Errorf("kubectl attach got all %d lines of a burst it did not read", n)
		}
	}
	if code := k.waitExit(t, time.Minute); code == 0 || !strings.Contains(k.stderr.String(), "behind the container's output") {
		t.Errorf("kubectl attach detached after %d lines: exit status %d, stderr %q; want an error saying it fell behind", n, code, k.stderr.String())
	}
	t.Logf("a client that did not read got %d lines of 131072 and: %s", n, strings.TrimSpace(k.stderr.String()))

	// A TTY container: an interactive shell as its process.
	tty := busyboxPod(c, ns, "tty", "")
	tty.Spec.Containers[0].Command = []string{"sh"}
	tty.Spec.Containers[0].Stdin, tty.Spec.Containers[0].TTY = true, true
	runPod(t, c, ctx, tty)
	term := openTerminal(t, 30, 90)
	k = startKubectl(t, c, kubectlIO{term: term}, "-n", ns, "attach", "-it", "tty")
	// The shell printed its prompt before anyone attached: press enter
	// (as kubectl suggests) until a new one shows.
	at, prompted := 0, false
	for range 20 {
		from := term.send(t, "\r")
		if next, ok := term.wait(from, regexp.MustCompile(`\r\n`+prompt.String()), 3*time.Second); ok {
			at, prompted = next, true
			break
		}
	}
	if !prompted {
		t.Fatalf("no shell prompt through kubectl attach -it:\n%q", term.since(0))
	}
	at = term.send(t, "echo attached-$((2+3)); stty size\r")
	m, at := term.expectMatch(t, at, regexp.MustCompile(`\r\nattached-5\r\n(\d+ \d+)\r\n`))
	if m[1] != "30 90" {
		t.Errorf("stty size in the attached TTY = %q, want the terminal's 30 90", m[1])
	}
	if size, _ := term.resizeSeen(t, at, 35, 95); size != "35 95" {
		t.Errorf("stty size in the attached TTY after resizing the terminal to 35x95 = %q", size)
	}
	k.terminate(t)
	expectRunning(t, c, ctx, ns, "tty")
}

// testCp: kubectl cp a host directory tree (a few MB of random bytes
// among small files) and a single file into a container, and a directory
// and a file made in the container back to the host, each checked by
// SHA-256 on the other side.
func testCp(t *testing.T, c *Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ns := c.Namespace(t, "cp")
	runPod(t, c, ctx, busyboxPod(c, ns, "box", "exec sleep 100000"))

	host := t.TempDir()
	up := filepath.Join(host, "up")
	files := map[string][]byte{
		"big.bin":         randomBytes(t, 4<<20+123),
		"a/one.txt":       []byte("one\n"),
		"a/b/two.bin":     randomBytes(t, 100<<10),
		"a/b/c/three.txt": []byte("three\n"),
		"a/empty.txt":     nil,
	}
	for name, b := range files {
		p := filepath.Join(up, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(up, "emptydir"), 0o755); err != nil {
		t.Fatal(err)
	}
	want := hashTree(t, up)

	// Host -> container: the tree, then one file.
	if out, err := c.Kubectl(ctx, "cp", up, ns+"/box:/tmp/up"); err != nil {
		t.Fatalf("kubectl cp %s -> box:/tmp/up: %v\n%s", up, err, out)
	}
	if got := containerHashes(t, c, ctx, ns, "box", "/tmp/up"); !maps.Equal(got, want) {
		t.Errorf("after kubectl cp of the tree, the container has\n%v\nwant\n%v", got, want)
	}
	if out, err := c.Kubectl(ctx, "-n", ns, "exec", "box", "--", "test", "-d", "/tmp/up/emptydir"); err != nil {
		t.Errorf("the empty directory did not reach the container: %v\n%s", err, out)
	}
	if out, err := c.Kubectl(ctx, "cp", filepath.Join(up, "big.bin"), ns+"/box:/tmp/single.bin"); err != nil {
		t.Fatalf("kubectl cp of one file: %v\n%s", err, out)
	}
	if got := containerHashes(t, c, ctx, ns, "box", "/tmp/single.bin"); got["."] != want["big.bin"] {
		t.Errorf("after kubectl cp of big.bin to /tmp/single.bin: %v, want %s", got, want["big.bin"])
	}

	// Container -> host: a tree made in the container, then one file.
	if out, err := c.Kubectl(ctx, "-n", ns, "exec", "box", "--", "sh", "-c",
		"mkdir -p /tmp/down/x/y && head -c 3145728 /dev/urandom > /tmp/down/big.bin && echo small > /tmp/down/x/y/small.txt && head -c 77777 /dev/urandom > /tmp/down/x/mid.bin"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	inside := containerHashes(t, c, ctx, ns, "box", "/tmp/down")
	if len(inside) != 3 {
		t.Fatalf("the container's /tmp/down has %v, want 3 files", inside)
	}
	down := filepath.Join(host, "down")
	if out, err := c.Kubectl(ctx, "cp", ns+"/box:/tmp/down", down); err != nil {
		t.Fatalf("kubectl cp box:/tmp/down -> %s: %v\n%s", down, err, out)
	}
	if got := hashTree(t, down); !maps.Equal(got, inside) {
		t.Errorf("after kubectl cp from the container, the host has\n%v\nwant\n%v", got, inside)
	}
	single := filepath.Join(host, "single.bin")
	if out, err := c.Kubectl(ctx, "cp", ns+"/box:/tmp/down/big.bin", single); err != nil {
		t.Fatalf("kubectl cp of one file from the container: %v\n%s", err, out)
	}
	if got := hashFile(t, single); got != inside["big.bin"] {
		t.Errorf("big.bin copied from the container: sha256 %s, want %s", got, inside["big.bin"])
	}
}

// testPortForward: kubectl port-forward to two ports of a pod, on local
// ports kubectl picks: an HTTP server gets several requests and serves a
// 4 MiB response (also four at once); a TCP echo server gets 4 MiB from
// clients that then half-close, and sends all of it back before it
// closes. kubectl stops on SIGTERM.
func testPortForward(t *testing.T, c *Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ns := c.Namespace(t, "port-forward")
	web := busyboxPod(c, ns, "web", "mkdir -p /www && echo page-$(hostname) > /www/index.html && head -c 4194304 /dev/urandom > /www/big.bin && exec httpd -f -p 8080 -h /www")
	web.Spec.Containers[0].ReadinessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/index.html", Port: intstr.FromInt32(8080)}},
		PeriodSeconds: 1,
	}
	// nc -e: each connection is cat's stdin and stdout.
	echo := busyboxPod(c, ns, "echo", "exec nc -ll -p 9000 -e cat").Spec.Containers[0]
	echo.Name = "echo"
	echo.ReadinessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(9000)}},
		PeriodSeconds: 1,
	}
	web.Spec.Containers = append(web.Spec.Containers, echo)
	runPod(t, c, ctx, web)
	bigSum := containerHashes(t, c, ctx, ns, "web", "/www/big.bin")["."]

	k := startKubectl(t, c, kubectlIO{}, "-n", ns, "port-forward", "pod/web", ":8080", ":9000")
	m := k.expectLine(t, regexp.MustCompile(`^Forwarding from 127\.0\.0\.1:(\d+) -> 8080$`))
	base := "http://127.0.0.1:" + m[1]
	m = k.expectLine(t, regexp.MustCompile(`^Forwarding from 127\.0\.0\.1:(\d+) -> 9000$`))
	echoAddr := "127.0.0.1:" + m[1]
	t.Logf("kubectl forwards %s to web:8080 and %s to web:9000", base, echoAddr)

	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range 5 {
		body, err := get(client, base+"/index.html")
		if err != nil || string(body) != "page-web\n" {
			t.Errorf("GET %d through the forward: %q, %v; want page-web", i, body, err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 4 {
		wg.Go(func() {
			body, err := get(client, base+"/big.bin")
			if err == nil {
				if s := sha256.Sum256(body); hex.EncodeToString(s[:]) != bigSum {
					err = fmt.Errorf("%d bytes with sha256 %x, want 4194304 with %s", len(body), s, bigSum)
				}
			}
			if err != nil {
				errs <- fmt.Errorf("GET big.bin (%d of 4 at once): %w", i, err)
			}
		})
	}
	wg.Wait()
	if body, err := get(client, base+"/big.bin"); err != nil || len(body) != 4194304 {
		t.Errorf("GET big.bin alone: %d bytes, %v", len(body), err)
	}
	for i := range 3 {
		data := randomBytes(t, 4<<20)
		wg.Go(func() {
			if err := echoRoundTrip(echoAddr, data); err != nil {
				errs <- fmt.Errorf("echo of 4 MiB (%d of 3 at once): %w", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	k.terminate(t)
}

// echoRoundTrip sends data to an echo server at addr, half-closes, and
// checks that the same bytes come back before the server closes.
func echoRoundTrip(addr string, data []byte) error {
	conn, err := net.DialTimeout("tcp", addr, time.Minute)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(2 * time.Minute)); err != nil {
		return err
	}
	sent := make(chan error, 1)
	go func() {
		_, err := conn.Write(data)
		if err == nil {
			err = conn.(*net.TCPConn).CloseWrite()
		}
		sent <- err
	}()
	back, err := io.ReadAll(conn)
	if serr := <-sent; serr != nil {
		return fmt.Errorf("send: %w", serr)
	}
	if err != nil {
		return fmt.Errorf("after %d bytes back: %w", len(back), err)
	}
	if !bytes.Equal(back, data) {
		return fmt.Errorf("%d bytes back, not the %d sent", len(back), len(data))
	}
	return nil
}

// testLogsFollow: kubectl logs -f follows a container writing a line each
// 200 ms, every line in order as it is written, until kubectl is stopped;
// on a container that exits, kubectl logs -f ends by itself after the
// last line.
func testLogsFollow(t *testing.T, c *Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ns := c.Namespace(t, "logs-follow")
	runPod(t, c, ctx, busyboxPod(c, ns, "ticker", `i=0; while true; do i=$((i+1)); echo "tick $i"; sleep 0.2; done`))
	waitKubectl(t, c, ctx, "tick 3\n", "-n", ns, "logs", "ticker")

	tick := regexp.MustCompile(`^tick (\d+)$`)
	k := startKubectl(t, c, kubectlIO{}, "-n", ns, "logs", "-f", "ticker")
	k.expectLine(t, regexp.MustCompile(`^tick 1$`))
	// kubectl follows by now: the lines after the last one a plain
	// kubectl logs shows now are written after it started.
	out, err := c.Kubectl(ctx, "-n", ns, "logs", "--tail=1", "ticker")
	m := tick.FindStringSubmatch(strings.TrimSpace(out))
	if err != nil || m == nil {
		t.Fatalf("kubectl logs --tail=1 ticker: %q, %v", out, err)
	}
	last, _ := strconv.Atoi(m[1])
	for want := 2; want <= last+10; want++ {
		m := k.expectLine(t, tick)
		if n, _ := strconv.Atoi(m[1]); n != want {
			t.Fatalf("kubectl logs -f: tick %d after tick %d", n, want-1)
		}
	}
	t.Logf("kubectl logs -f had ticks 1..%d in order, the last 10 written after it started", last+10)
	k.terminate(t)

	// A container that ends: logs -f ends with it. It starts writing only
	// once kubectl follows it (a file made by exec).
	fin := busyboxPod(c, ns, "finite", `while [ ! -e /tmp/go ]; do sleep 0.1; done; for i in $(seq 1 20); do echo "count $i"; sleep 0.1; done; echo finished`)
	fin.Spec.RestartPolicy = corev1.RestartPolicyNever
	runPod(t, c, ctx, fin)
	k = startKubectl(t, c, kubectlIO{}, "-n", ns, "logs", "-f", "finite")
	// Whether kubectl connects before the first line or after the last,
	// it prints them all; what matters here is that it ends by itself.
	if out, err := c.Kubectl(ctx, "-n", ns, "exec", "finite", "--", "touch", "/tmp/go"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for i := 1; i <= 20; i++ {
		k.expectLine(t, regexp.MustCompile(fmt.Sprintf(`^count %d$`, i)))
	}
	k.expectLine(t, regexp.MustCompile(`^finished$`))
	if code := k.waitExit(t, 2*time.Minute); code != 0 {
		t.Errorf("kubectl logs -f of a container that exited: exit status %d, want 0; stderr %q", code, k.stderr.String())
	}
}

// testLogsPrevious: a container that fails once and is restarted: kubectl
// logs --previous shows the failed instance's output, kubectl logs the
// running one's.
func testLogsPrevious(t *testing.T, c *Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ns := c.Namespace(t, "logs-previous")
	p := busyboxPod(c, ns, "crash", `n=$(cat /state/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /state/n
echo "instance $n started"
if [ $n -eq 1 ]; then echo "instance $n failing"; exit 3; fi
echo "instance $n running"; exec sleep 100000`)
	p.Spec.Volumes = []corev1.Volume{{Name: "state", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "state", MountPath: "/state"}}
	if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var cs corev1.ContainerStatus
	deadline := time.Now().Add(2 * time.Minute)
	for {
		pod, err := c.Client.CoreV1().Pods(ns).Get(ctx, "crash", metav1.GetOptions{})
		if err == nil && len(pod.Status.ContainerStatuses) == 1 {
			if cs = pod.Status.ContainerStatuses[0]; cs.RestartCount >= 1 && cs.State.Running != nil && cs.Ready {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod crash not running again after a restart 2m after its creation: %v; container %+v", err, cs)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if cs.RestartCount != 1 || cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.ExitCode != 3 {
		t.Errorf("container crash: restartCount %d, last state %+v; want 1 restart after exit code 3", cs.RestartCount, cs.LastTerminationState)
	}
	waitKubectl(t, c, ctx, "instance 2 running", "-n", ns, "logs", "crash")
	if out, err := c.Kubectl(ctx, "-n", ns, "logs", "crash"); err != nil || out != "instance 2 started\ninstance 2 running\n" {
		t.Errorf("kubectl logs crash = %q, %v; want the running instance's two lines", out, err)
	}
	if out, err := c.Kubectl(ctx, "-n", ns, "logs", "--previous", "crash"); err != nil || out != "instance 1 started\ninstance 1 failing\n" {
		t.Errorf("kubectl logs --previous crash = %q, %v; want the failed instance's two lines", out, err)
	}
}

// busyboxPod is a pod of one busybox container "main" running script
// with sh -c; sleep ignores SIGTERM as PID 1, so the grace period is short.
func busyboxPod(c *Cluster, ns, name, script string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			// No service-account token volume: the pod's mounts are the
			// ones a case gives it (bad input names config.mounts[0]).
			AutomountServiceAccountToken: ptr.To(false),
			Containers: []corev1.Container{{
				Name: "main", Image: c.Images.Busybox.Ref, ImagePullPolicy: corev1.PullIfNotPresent,
				Command: []string{"sh", "-c", script},
			}},
		},
	}
}

// runPod creates pod and waits until it is Ready.
func runPod(t *testing.T, c *Cluster, ctx context.Context, pod *corev1.Pod) {
	t.Helper()
	if _, err := c.Client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if out, err := c.Kubectl(ctx, "-n", pod.Namespace, "wait", "--for=condition=Ready", "pod/"+pod.Name, "--timeout=2m"); err != nil {
		desc, _ := c.Kubectl(context.Background(), "-n", pod.Namespace, "describe", "pod", pod.Name)
		t.Fatalf("%v\n%s\n%s", err, out, desc)
	}
}

// expectRunning checks that the pod's one container runs and never restarted.
func expectRunning(t *testing.T, c *Cluster, ctx context.Context, ns, name string) {
	t.Helper()
	pod, err := c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cs := pod.Status.ContainerStatuses; len(cs) != 1 || cs[0].State.Running == nil || cs[0].RestartCount != 0 {
		t.Errorf("pod %s after the client detached: %+v, want its container running, never restarted", name, cs)
	}
}

// kubectlResult is what a kubectl run gave.
type kubectlResult struct {
	stdout, stderr string
	code           int // exit status
	err            error
}

// kubectlRun runs kubectl to its end with stdin (none when nil), keeping
// its stdout and stderr apart.
func kubectlRun(ctx context.Context, c *Cluster, stdin []byte, args ...string) kubectlResult {
	cmd := exec.CommandContext(ctx, c.Bins["kubectl"], append([]string{"--kubeconfig=" + c.AdminKubeconfig}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := kubectlResult{stdout: stdout.String(), stderr: stderr.String(), err: err}
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		r.code = -1
	}
	return r
}

// kubectlIO is where a background kubectl's streams go: stdin (none when
// nil) and stdout as lines, or all three on a terminal.
type kubectlIO struct {
	stdin io.Reader
	term  *terminal
}

// bgKubectl is a kubectl running in the background.
type bgKubectl struct {
	cmd    *exec.Cmd
	args   []string
	exited chan struct{}
	lines  chan string // stdout, closed at its end; nil on a terminal
	stderr syncBuffer
}

// startKubectl starts kubectl as admin. Cleanup kills it (this process
// only) if it still runs.
func startKubectl(t *testing.T, c *Cluster, o kubectlIO, args ...string) *bgKubectl {
	t.Helper()
	k := &bgKubectl{args: args, exited: make(chan struct{})}
	k.cmd = exec.Command(c.Bins["kubectl"], append([]string{"--kubeconfig=" + c.AdminKubeconfig}, args...)...)
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stdoutW *os.File
	if o.term != nil {
		// A session of its own with the terminal as its controlling TTY,
		// as a shell starts it.
		k.cmd.Stdin, k.cmd.Stdout, k.cmd.Stderr = o.term.slave, o.term.slave, o.term.slave
		k.cmd.SysProcAttr.Setsid, k.cmd.SysProcAttr.Setctty, k.cmd.SysProcAttr.Ctty = true, true, 0
	} else {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		stdoutW = w
		k.cmd.Stdin, k.cmd.Stdout, k.cmd.Stderr = o.stdin, w, &k.stderr
		k.lines = make(chan string, 1024)
		stop := make(chan struct{})
		t.Cleanup(func() { close(stop) })
		go func() {
			defer r.Close()
			defer close(k.lines)
			sc := bufio.NewScanner(r)
			for sc.Scan() {
				select {
				case k.lines <- sc.Text():
				case <-stop:
					return
				}
			}
		}()
		defer w.Close()
	}
	if err := k.cmd.Start(); err != nil {
		if stdoutW != nil {
			stdoutW.Close()
		}
		t.Fatalf("start kubectl %s: %v", strings.Join(args, " "), err)
	}
	if o.term != nil {
		o.term.slave.Close()
	}
	go func() {
		_ = k.cmd.Wait()
		close(k.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-k.exited:
		default:
			_ = k.cmd.Process.Kill()
			<-k.exited
		}
	})
	return k
}

// expectLine reads kubectl's stdout lines until one matches re and
// returns its submatches.
func (k *bgKubectl) expectLine(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	var seen []string
	timeout := time.After(time.Minute)
	for {
		select {
		case l, ok := <-k.lines:
			if !ok {
				t.Fatalf("kubectl %s: its output ended without a line matching %q; lines: %q; stderr: %q",
					strings.Join(k.args, " "), re, seen, k.stderr.String())
			}
			if m := re.FindStringSubmatch(l); m != nil {
				return m
			}
			seen = append(seen, l)
		case <-timeout:
			t.Fatalf("kubectl %s: no line matching %q in a minute; lines: %q; stderr: %q",
				strings.Join(k.args, " "), re, seen, k.stderr.String())
		}
	}
}

// waitLine is expectLine that gives up after timeout.
func (k *bgKubectl) waitLine(re *regexp.Regexp, timeout time.Duration) ([]string, bool) {
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-k.lines:
			if !ok {
				return nil, false
			}
			if m := re.FindStringSubmatch(l); m != nil {
				return m, true
			}
		case <-deadline:
			return nil, false
		}
	}
}

// waitExit waits for kubectl to exit and returns its exit status.
func (k *bgKubectl) waitExit(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-k.exited:
		return k.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("kubectl %s still runs after %s; stderr: %q", strings.Join(k.args, " "), timeout, k.stderr.String())
		return -1
	}
}

// kill sends SIGKILL to this kubectl and waits for it to exit.
func (k *bgKubectl) kill(t *testing.T) {
	t.Helper()
	if err := k.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatal(err)
	}
	k.waitExit(t, time.Minute)
}

// terminate sends SIGTERM to this kubectl and waits for it to exit.
func (k *bgKubectl) terminate(t *testing.T) {
	t.Helper()
	if err := k.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatal(err)
	}
	k.waitExit(t, time.Minute)
}

// prompt is the prompt of busybox's shell as root in /.
var prompt = regexp.MustCompile(`/ # `)

// terminal is a pseudo-terminal whose slave side is a kubectl's
// controlling TTY; the test types into the master side and reads what
// kubectl writes there.
type terminal struct {
	master, slave *os.File
	mu            sync.Mutex
	out           []byte
	notify        chan struct{} // a token when out grew or the reader ended
	ended         chan struct{} // the reader ended (kubectl and every slave fd gone)
}

// openTerminal opens a pseudo-terminal of rows x cols (posix_openpt,
// unlockpt, ptsname) and reads its master side until it closes.
func openTerminal(t *testing.T, rows, cols uint16) *terminal {
	t.Helper()
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	master := os.NewFile(uintptr(fd), "/dev/ptmx") // non-blocking: in the poller, Close ends a Read
	t.Cleanup(func() { master.Close() })
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("ptsname: %v", err)
	}
	if err := unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}); err != nil {
		t.Fatal(err)
	}
	slave, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slave.Close() })
	term := &terminal{master: master, slave: slave, notify: make(chan struct{}, 1), ended: make(chan struct{})}
	go func() {
		defer close(term.ended)
		b := make([]byte, 32<<10)
		for {
			n, err := master.Read(b)
			term.mu.Lock()
			term.out = append(term.out, b[:n]...)
			term.mu.Unlock()
			select {
			case term.notify <- struct{}{}:
			default:
			}
			if err != nil { // EIO once no slave fd is open
				return
			}
		}
	}()
	return term
}

// send types s and returns the output offset before it.
func (term *terminal) send(t *testing.T, s string) int {
	t.Helper()
	term.mu.Lock()
	at := len(term.out)
	term.mu.Unlock()
	if _, err := term.master.Write([]byte(s)); err != nil {
		t.Fatalf("type %q: %v", s, err)
	}
	return at
}

// wait waits up to timeout for the output after offset from to match re;
// it returns the offset after the match.
func (term *terminal) wait(from int, re *regexp.Regexp, timeout time.Duration) (int, bool) {
	_, end, ok := term.waitMatch(from, re, timeout)
	return end, ok
}

func (term *terminal) waitMatch(from int, re *regexp.Regexp, timeout time.Duration) ([]string, int, bool) {
	deadline := time.After(timeout)
	for {
		term.mu.Lock()
		out := term.out[from:]
		loc := re.FindSubmatchIndex(out)
		var m []string
		if loc != nil {
			for i := 0; i < len(loc); i += 2 {
				if loc[i] >= 0 {
					m = append(m, string(out[loc[i]:loc[i+1]]))
				} else {
					m = append(m, "")
				}
			}
		}
		term.mu.Unlock()
		if loc != nil {
			return m, from + loc[1], true
		}
		select {
		case <-term.notify:
		case <-term.ended:
			select {
			case <-term.notify: // the last output
			default:
				return nil, from, false
			}
		case <-deadline:
			return nil, from, false
		}
	}
}

// expect is wait that fails the test after a minute.
func (term *terminal) expect(t *testing.T, from int, re *regexp.Regexp) int {
	t.Helper()
	_, end := term.expectMatch(t, from, re)
	return end
}

func (term *terminal) expectMatch(t *testing.T, from int, re *regexp.Regexp) ([]string, int) {
	t.Helper()
	m, end, ok := term.waitMatch(from, re, time.Minute)
	if !ok {
		t.Fatalf("the terminal shows no %q after offset %d:\n%q", re, from, term.since(from))
	}
	return m, end
}

// since is the output from offset from on.
func (term *terminal) since(from int) string {
	term.mu.Lock()
	defer term.mu.Unlock()
	return string(term.out[from:])
}

// resize sets the terminal's size: its foreground process (kubectl) gets SIGWINCH.
// resizeSeen resizes the terminal and asks the shell on it for its size
// (stty size) until it shows rows x cols, up to 30 times a second apart:
// kubectl sends a resize on SIGWINCH, asynchronously. It returns the last
// size seen and where the output was read to.
func (term *terminal) resizeSeen(t *testing.T, from int, rows, cols uint16) (string, int) {
	t.Helper()
	if err := term.resize(rows, cols); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%d %d", rows, cols)
	var size string
	for range 30 {
		from = term.send(t, "stty size\r")
		var m []string
		m, from = term.expectMatch(t, from, regexp.MustCompile(`\r\n(\d+ \d+)\r\n`))
		if size = m[1]; size == want {
			break
		}
		time.Sleep(time.Second)
	}
	return size, from
}

func (term *terminal) resize(rows, cols uint16) error {
	return term.control(func(fd int) error {
		return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	})
}

// termios is the slave side's settings (TCGETS on a master reads its slave's).
func (term *terminal) termios() (*unix.Termios, error) {
	var tio *unix.Termios
	err := term.control(func(fd int) (err error) {
		tio, err = unix.IoctlGetTermios(fd, unix.TCGETS)
		return err
	})
	if tio == nil {
		tio = &unix.Termios{}
	}
	return tio, err
}

func (term *terminal) control(f func(fd int) error) error {
	rc, err := term.master.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// syncBuffer is a bytes.Buffer safe for a writer and readers at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// pipe returns an os.Pipe whose ends cleanup closes.
func pipe(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func get(c *http.Client, url string) ([]byte, error) {
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s", resp.Status)
	}
	return b, err
}

// hashTree returns the SHA-256 of every regular file below dir by its
// slash-separated path relative to dir.
func hashTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		m[filepath.ToSlash(rel)] = hashFile(t, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func hashFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// containerHashes is hashTree inside the container, with kubectl exec; a
// path naming a file gives that file's hash as ".".
func containerHashes(t *testing.T, c *Cluster, ctx context.Context, ns, pod, path string) map[string]string {
	t.Helper()
	script := `if [ -d "$1" ]; then cd "$1" && find . -type f -exec sha256sum {} +; else sha256sum "$1" | sed 's|  .*|  ./.|'; fi`
	out, err := c.Kubectl(ctx, "-n", ns, "exec", pod, "--", "sh", "-c", script, "sh", path)
	if err != nil {
		t.Fatalf("sha256sum of %s in %s: %v\n%s", path, pod, err, out)
	}
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		sum, name, ok := strings.Cut(l, "  ")
		if !ok {
			t.Fatalf("sha256sum of %s in %s: line %q", path, pod, l)
		}
		if name = strings.TrimPrefix(name, "./"); name == "." || name == "" {
			name = "."
		}
		m[name] = sum
	}
	return m
}

func seq(from, to int) []string {
	var s []string
	for i := from; i <= to; i++ {
		s = append(s, strconv.Itoa(i))
	}
	return s
}
