package main

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestNginxListenPort(t *testing.T) {
	for _, tc := range []struct {
		desc  string
		confs map[string]string
		want  int
		err   bool
	}{
		{desc: "no conf: nginx's default", want: 80},
		{desc: "plain", confs: map[string]string{"default.conf": "server {\n    listen       12003;\n}\n"}, want: 12003},
		{desc: "address and options", confs: map[string]string{"default.conf": "server {\n  listen 0.0.0.0:8080 default_server;\n}\n"}, want: 8080},
		{desc: "ipv6", confs: map[string]string{"default.conf": "listen [::]:81;\n"}, want: 81},
		{desc: "commented out", confs: map[string]string{"default.conf": "#listen 1;\nlisten 82;\n"}, want: 82},
		{desc: "first file by name", confs: map[string]string{"b.conf": "listen 2;", "a.conf": "listen 1;"}, want: 1},
		{desc: "file without listen is passed over", confs: map[string]string{"a.conf": "gzip on;", "b.conf": "listen 3;"}, want: 3},
		{desc: "other suffixes ignored", confs: map[string]string{"default.conf.bak": "listen 9;"}, want: 80},
		{desc: "port out of range", confs: map[string]string{"default.conf": "listen 70000;"}, err: true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			dir := t.TempDir()
			for name, c := range tc.confs {
				writeFile(t, filepath.Join(dir, name), c)
			}
			got, err := nginxListenPort(dir)
			if (err != nil) != tc.err || got != tc.want {
				t.Fatalf("nginxListenPort = %d, %v; want %d, error %v", got, err, tc.want, tc.err)
			}
		})
	}
}

func TestHttpdListen(t *testing.T) {
	for _, tc := range []struct {
		desc, conf string
		want       int
		found      bool
	}{
		{desc: "Listen", conf: "ServerRoot \"/usr/local/apache2\"\nListen 80\n", want: 80, found: true},
		{desc: "address", conf: "Listen 127.0.0.1:8081\n", want: 8081, found: true},
		{desc: "none", conf: "ServerName x\n"},
		{desc: "commented", conf: "#Listen 12\n"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "httpd.conf")
			writeFile(t, f, tc.conf)
			got, found, err := directivePort(f, httpdListenRE)
			if err != nil || got != tc.want || found != tc.found {
				t.Fatalf("directivePort = %d, %v, %v; want %d, %v", got, found, err, tc.want, tc.found)
			}
		})
	}
}

func TestMatchProcs(t *testing.T) {
	proc := t.TempDir()
	for pid, p := range map[string]struct{ comm, cmdline string }{
		"1":   {"nginx", "nginx: master process nginx -g daemon off;\x00"},
		"7":   {"sleep", "sleep\x004321\x00"},
		"12":  {"sh", "sh\x00-c\x00sleep 1000\x00"},
		"30":  {"pgrep", "pgrep\x00sleep\x00"},
		"100": {"sleeper", "/bin/sleeper\x00"},
	} {
		writeFile(t, filepath.Join(proc, pid, "comm"), p.comm+"\n")
		writeFile(t, filepath.Join(proc, pid, "cmdline"), p.cmdline)
	}
	writeFile(t, filepath.Join(proc, "self", "comm"), "x\n") // not a PID
	for _, tc := range []struct {
		desc, pattern string
		full          bool
		want          []int
	}{
		{desc: "name substring, self excluded", pattern: "sleep", want: []int{7, 100}},
		{desc: "anchored", pattern: "^sleep$", want: []int{7}},
		{desc: "no match", pattern: "httpd", want: nil},
		{desc: "full command line", pattern: "sleep 1000", full: true, want: []int{12}},
		{desc: "full, arguments joined by spaces", pattern: "master process nginx -g", full: true, want: []int{1}},
		{desc: "name only without -f", pattern: "master", want: nil},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got := matchProcs(proc, regexp.MustCompile(tc.pattern), tc.full, 30)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("matchProcs(%q, full %v) = %v, want %v", tc.pattern, tc.full, got, tc.want)
			}
		})
	}
}

func TestPgrepStatus(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"init"}, 0},
		{[]string{"no-such-process-name"}, 1},
		{nil, 2},
		{[]string{"-x", "a"}, 2},
		{[]string{"a", "b"}, 2},
		{[]string{"("}, 2},
	} {
		root := t.TempDir()
		writeFile(t, filepath.Join(root, "proc/1/comm"), "init\n")
		if got := pgrep(root, tc.args, 999); got != tc.want {
			t.Errorf("pgrep %q = %d, want %d", tc.args, got, tc.want)
		}
	}
}

func TestFormatIPC(t *testing.T) {
	dir := t.TempDir()
	shm := filepath.Join(dir, "shm")
	writeFile(t, shm, "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap\n"+
		"         0         65 600                1048576  4321     0      0     0     0     0     0          0          0 1700000000                     0                     0\n"+
		"1234567890       99 1666                  4096    1     1      2  1000  1000  1000  1000          0          0 1700000000                  4096                     0\n")
	got, err := formatIPC(ipcSections[0], shm, map[string]string{"0": "root"})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(got, "\n")
	want := [][]string{
		{"------", "Shared", "Memory", "Segments", "--------"},
		{"key", "shmid", "owner", "perms", "bytes", "nattch"},
		{"0x00000000", "65", "root", "600", "1048576", "0"},
		{"0x499602d2", "99", "1000", "666", "4096", "2"},
	}
	if len(lines) < 5 || lines[0] != "" {
		t.Fatalf("output:\n%s", got)
	}
	for i, w := range want {
		if f := strings.Fields(lines[i+1]); !slices.Equal(f, w) {
			t.Errorf("line %d = %q, want fields %q", i+1, lines[i+1], w)
		}
	}

	bad := filepath.Join(dir, "bad")
	writeFile(t, bad, "key semid\n")
	if _, err := formatIPC(ipcSections[2], bad, nil); err == nil {
		t.Error("a table without the perms column was accepted")
	}
}

// TestIpcsHost reads the host's real /proc/sysvipc tables.
func TestIpcsHost(t *testing.T) {
	for _, args := range [][]string{nil, {"-m"}, {"-a"}} {
		if got := ipcs("/", args); got != 0 {
			t.Errorf("ipcs %q = %d", args, got)
		}
	}
	if got := ipcs("/", []string{"-x"}); got != 1 {
		t.Errorf("ipcs -x = %d, want 1", got)
	}
}

// build compiles the command into dir/name.
func build(t *testing.T, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// proc is a started process; exited is closed once it has been waited for.
type proc struct {
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
}

// start runs bin with root as STANDIN_ROOT; the process is killed at cleanup.
func start(t *testing.T, bin, root string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), exited: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), "STANDIN_ROOT="+root)
	p.cmd.Stdout, p.cmd.Stderr = os.Stderr, os.Stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.waitErr = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			t.Errorf("pid %d still there after SIGKILL", p.cmd.Process.Pid)
		}
	})
	return p
}

// get fetches url until it answers or 10s pass (the server starts
// asynchronously and there is no event to wait on).
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp.StatusCode, string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends sig and returns the exit error.
func (p *proc) stop(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
		return p.waitErr
	case <-time.After(15 * time.Second):
		t.Fatalf("no exit 15s after %v", sig)
		return nil
	}
}

// TestNginx runs the binary as nginx: it must look like nginx's master
// process to /proc, pidof and critest, serve the document root, and stop on
// each of its stop signals with status 0.
func TestNginx(t *testing.T) {
	bin := build(t, "nginx")
	for _, sig := range []syscall.Signal{syscall.SIGQUIT, syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			root := t.TempDir()
			port := freePort(t)
			writeFile(t, filepath.Join(root, "etc/nginx/conf.d/default.conf"), "server {\n    listen       "+strconv.Itoa(port)+";\n}\n")
			writeFile(t, filepath.Join(root, "usr/share/nginx/html/index.html"), "<h1>Welcome to nginx!</h1>\n")
			if err := os.MkdirAll(filepath.Join(root, "var/run"), 0o755); err != nil {
				t.Fatal(err)
			}
			p := start(t, bin, root, "-g", "daemon off;")

			code, body := get(t, "http://127.0.0.1:"+strconv.Itoa(port)+"/")
			if code != 200 || !strings.Contains(body, "Welcome to nginx!") {
				t.Fatalf("GET / = %d %q", code, body)
			}
			pid := p.cmd.Process.Pid
			cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
			if got, want := string(cmdline), "nginx: master process nginx -g daemon off;\x00"; got != want {
				t.Errorf("cmdline %q, want %q", got, want)
			}
			if comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm"); string(comm) != "nginx\n" {
				t.Errorf("comm %q, want nginx", comm)
			}
			pidFile := filepath.Join(root, "var/run/nginx.pid")
			if b, err := os.ReadFile(pidFile); err != nil || string(b) != strconv.Itoa(pid)+"\n" {
				t.Errorf("nginx.pid = %q, %v; want %d", b, err, pid)
			}
			if err := p.stop(t, sig); err != nil {
				t.Fatalf("exit after %v: %v, want status 0", sig, err)
			}
			if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
				t.Errorf("nginx.pid left behind: %v", err)
			}
		})
	}
}

func TestHttpd(t *testing.T) {
	bin := build(t, "httpd-foreground")
	root := t.TempDir()
	port := freePort(t)
	writeFile(t, filepath.Join(root, "usr/local/apache2/conf/httpd.conf"), "Listen "+strconv.Itoa(port)+"\n")
	writeFile(t, filepath.Join(root, "usr/local/apache2/htdocs/index.html"), "<html><body><h1>It works!</h1></body></html>\n")
	p := start(t, bin, root)
	if code, body := get(t, "http://127.0.0.1:"+strconv.Itoa(port)+"/"); code != 200 || !strings.Contains(body, "It works!") {
		t.Fatalf("GET / = %d %q", code, body)
	}
	if code, _ := get(t, "http://127.0.0.1:"+strconv.Itoa(port)+"/missing"); code != 404 {
		t.Errorf("GET /missing = %d, want 404", code)
	}
	if err := p.stop(t, syscall.SIGWINCH); err != nil {
		t.Fatalf("exit after SIGWINCH: %v, want status 0", err)
	}
}

func TestNnpAndUnknownName(t *testing.T) {
	nnp := build(t, "nnp")
	out, err := exec.Command(nnp).Output()
	if want := "Effective uid: " + strconv.Itoa(os.Geteuid()) + "\n"; err != nil || string(out) != want {
		t.Errorf("nnp = %q, %v; want %q", out, err, want)
	}
	other := filepath.Join(filepath.Dir(nnp), "other")
	if err := os.Link(nnp, other); err != nil {
		t.Fatal(err)
	}
	err = exec.Command(other).Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 127 {
		t.Errorf("unknown name: %v, want exit status 127", err)
	}
}
