package testimages

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// entry is a tar entry of a layer with its content.
type entry struct {
	hdr  *tar.Header
	data []byte
}

// layerEntries reads the single layer of img.
func layerEntries(t *testing.T, img v1.Image) map[string]entry {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("got %d layers, want 1", len(layers))
	}
	mt, err := layers[0].MediaType()
	if err != nil || mt != types.OCILayer {
		t.Fatalf("layer media type %q, %v; want %q", mt, err, types.OCILayer)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	out := map[string]entry{}
	var prev string
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Name <= prev {
			t.Errorf("tar entries not sorted: %q after %q", hdr.Name, prev)
		}
		prev = hdr.Name
		if !hdr.ModTime.Equal(Epoch) {
			t.Errorf("%s: mtime %v, want %v", hdr.Name, hdr.ModTime, Epoch)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(hdr.Name, "/")] = entry{hdr: hdr, data: data}
	}
	return out
}

func checkPlatform(t *testing.T, img v1.Image) *v1.ConfigFile {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("platform %s/%s, want linux/amd64", cf.OS, cf.Architecture)
	}
	if !cf.Created.Time.Equal(Epoch) {
		t.Errorf("created %v, want %v", cf.Created.Time, Epoch)
	}
	mt, err := img.MediaType()
	if err != nil || mt != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %q, %v; want %q", mt, err, types.OCIManifestSchema1)
	}
	return cf
}

func TestBusyboxDeterministic(t *testing.T) {
	a, err := Busybox()
	if err != nil {
		t.Fatal(err)
	}
	b, err := Busybox()
	if err != nil {
		t.Fatal(err)
	}
	da, err := a.Digest()
	if err != nil {
		t.Fatal(err)
	}
	db, err := b.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if da != db {
		t.Fatalf("two builds differ: %s != %s", da, db)
	}
	t.Logf("busybox digest %s", da)
}

func TestBusyboxContents(t *testing.T) {
	img, err := Busybox()
	if err != nil {
		t.Fatal(err)
	}
	cf := checkPlatform(t, img)
	if !reflect.DeepEqual(cf.Config.Cmd, []string{"sh"}) {
		t.Errorf("Cmd %q, want [sh]", cf.Config.Cmd)
	}
	if !reflect.DeepEqual(cf.Config.Env, []string{DefaultPath}) {
		t.Errorf("Env %q, want [%s]", cf.Config.Env, DefaultPath)
	}

	files := layerEntries(t, img)
	host, err := os.ReadFile(DefaultBusyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	bb, ok := files["bin/busybox"]
	if !ok || bb.hdr.Typeflag != tar.TypeReg || !bytes.Equal(bb.data, host) || bb.hdr.Mode != 0o755 {
		t.Errorf("bin/busybox missing or not the host's binary with mode 0755")
	}
	for _, applet := range []string{"sh", "ls", "cat", "sleep", "id", "env"} {
		e, ok := files["bin/"+applet]
		if !ok || e.hdr.Typeflag != tar.TypeSymlink || e.hdr.Linkname != "busybox" {
			t.Errorf("bin/%s is not a symlink to busybox: %+v", applet, e.hdr)
		}
	}
	if _, ok := files["bin/busybox"]; !ok {
		t.Error("no bin/busybox")
	}
	if tmp := files["tmp"]; tmp.hdr == nil || tmp.hdr.Typeflag != tar.TypeDir || tmp.hdr.Mode != 0o1777 {
		t.Errorf("tmp is not a directory with mode 1777: %+v", tmp.hdr)
	}
	passwd := string(files["etc/passwd"].data)
	for _, want := range []string{"root:x:0:0:", "app:x:1000:1000:", "nobody:x:65534:65534:"} {
		if !strings.Contains(passwd, want) {
			t.Errorf("etc/passwd lacks %q:\n%s", want, passwd)
		}
	}
	group := string(files["etc/group"].data)
	for _, want := range []string{"root:x:0:", "app:x:1000:", "nobody:x:65534:"} {
		if !strings.Contains(group, want) {
			t.Errorf("etc/group lacks %q:\n%s", want, group)
		}
	}
	if h := files["home/app"].hdr; h == nil || h.Uid != 1000 || h.Gid != 1000 {
		t.Errorf("home/app not owned by 1000:1000: %+v", h)
	}
}

func TestBusyboxRejectsDynamicBinary(t *testing.T) {
	_, err := Busybox(WithBusyboxBinary("/bin/ls"))
	if err == nil || !strings.Contains(err.Error(), "not statically linked") {
		t.Fatalf("Busybox(/bin/ls) = %v, want a 'not statically linked' error", err)
	}
	_, err = Busybox(WithBusyboxBinary(filepath.Join(t.TempDir(), "missing")))
	if err == nil {
		t.Fatal("Busybox(missing) succeeded")
	}
}

// buildPause builds hack/pause into a temp dir.
func buildPause(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root, err := FindModuleRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin, err := BuildPause(ctx, root, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := checkStaticAMD64(bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

func TestPauseImage(t *testing.T) {
	bin := buildPause(t)
	img, err := Pause(context.Background(), bin)
	if err != nil {
		t.Fatal(err)
	}
	cf := checkPlatform(t, img)
	if !reflect.DeepEqual(cf.Config.Entrypoint, []string{"/pause"}) {
		t.Errorf("Entrypoint %q, want [/pause]", cf.Config.Entrypoint)
	}
	if cf.Config.User != "65535:65535" {
		t.Errorf("User %q, want 65535:65535", cf.Config.User)
	}
	files := layerEntries(t, img)
	if len(files) != 1 {
		t.Errorf("layer has %d entries, want only pause", len(files))
	}
	p, ok := files["pause"]
	if !ok || p.hdr.Mode != 0o755 || p.hdr.Typeflag != tar.TypeReg {
		t.Fatalf("no executable /pause in the layer: %+v", p.hdr)
	}

	again, err := Pause(context.Background(), bin)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := img.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("two pause images from one binary differ: %s != %s", d1, d2)
	}
}

func TestPauseRejectsDynamicBinary(t *testing.T) {
	if _, err := Pause(context.Background(), "/bin/ls"); err == nil || !strings.Contains(err.Error(), "not statically linked") {
		t.Fatalf("Pause(/bin/ls) = %v, want a 'not statically linked' error", err)
	}
}

func TestPauseVersion(t *testing.T) {
	out, err := exec.Command(buildPause(t), "-v").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(string(out)), "accel-cri pause "+PauseTag; got != want {
		t.Errorf("pause -v = %q, want %q", got, want)
	}
}

// TestPauseAsPID1 runs pause as PID 1 of a new PID namespace, makes it the
// parent of an orphan, checks it reaps the orphan when it exits, and that it
// exits 0 on SIGTERM.
func TestPauseAsPID1(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root for a PID namespace")
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		t.Fatal("no nsenter (util-linux)")
	}
	bin := buildPause(t)
	// A file, not a pipe: Wait then returns as soon as pause is gone.
	stderr, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	cmd := exec.Command(bin)
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	exited := make(chan struct{}) // closed once pause has been waited for
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				t.Errorf("pause (pid %d) still there 10s after SIGKILL", cmd.Process.Pid)
			}
		}
	})
	pid := cmd.Process.Pid

	// The Go runtime catches every signal from the start, so SigCgt tells
	// nothing; wait until pause has blocked in its signal loop (it is
	// sleeping, "S") before sending anything.
	waitFor(t, "pause to start", func() bool {
		return strings.HasPrefix(procStatusField(pid, "State"), "S")
	})

	// sh (pid 2 in the namespace) starts sleep and exits: sleep is
	// re-parented to pause, which must reap it when it exits.
	// No pipes: the orphan would hold them open and Run would wait for it.
	if err := exec.Command(nsenter, "-t", strconv.Itoa(pid), "-p", "--",
		DefaultBusyboxPath, "sh", "-c", DefaultBusyboxPath+" sleep 2 & exit 0").Run(); err != nil {
		t.Fatalf("nsenter: %v", err)
	}
	waitFor(t, "the orphan to become a child of pause", func() bool { return len(children(pid)) > 0 })
	waitFor(t, "pause to reap the orphan", func() bool { return len(children(pid)) == 0 })

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if err := waitErr; err != nil {
			out, _ := os.ReadFile(stderr.Name())
			t.Fatalf("pause exited with %v, want 0; stderr:\n%s", err, out)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("pause did not exit on SIGTERM")
	}
}

// waitFor checks cond every 20ms for up to 10s: used where the kernel offers
// no event to wait on (procfs state of another process).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// procStatusField returns a field of /proc/PID/status.
func procStatusField(pid int, field string) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// children returns the PIDs (in our namespace) of the processes, zombies
// included, whose parent is pid.
func children(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if procStatusField(p, "PPid") == strconv.Itoa(pid) {
			out = append(out, p)
		}
	}
	return out
}

func TestAppendLayer(t *testing.T) {
	base, err := Busybox()
	if err != nil {
		t.Fatal(err)
	}
	files := []LayerFile{
		{Name: "data/sub/hello.txt", Data: []byte("hello\n")},
		{Name: "data/link", Link: "sub"},
	}
	img, err := AppendLayer(base, files...)
	if err != nil {
		t.Fatal(err)
	}
	again, err := AppendLayer(base, files...)
	if err != nil {
		t.Fatal(err)
	}
	if digestOf(t, img) != digestOf(t, again) {
		t.Error("two builds differ")
	}
	if digestOf(t, img) == digestOf(t, base) {
		t.Error("the image did not change")
	}
	cf := checkPlatform(t, img)
	if !reflect.DeepEqual(cf.Config.Cmd, []string{"sh"}) || len(cf.RootFS.DiffIDs) != 2 || len(cf.History) != 2 {
		t.Errorf("config %+v, want busybox's with two layers", cf)
	}
	got, n := layerFiles(t, img)
	if n != 2 {
		t.Fatalf("%d layers, want 2", n)
	}
	if e := got["bin/busybox"]; e.hdr == nil {
		t.Error("the base layer's files are gone")
	}
	for name, want := range map[string]struct {
		typ  byte
		mode int64
		data string
		link string
	}{
		"data":               {typ: tar.TypeDir, mode: 0o755},
		"data/sub":           {typ: tar.TypeDir, mode: 0o755},
		"data/sub/hello.txt": {typ: tar.TypeReg, mode: 0o644, data: "hello\n"},
		"data/link":          {typ: tar.TypeSymlink, mode: 0o644, link: "sub"},
	} {
		e := got[name]
		if e.hdr == nil {
			t.Errorf("%s missing", name)
			continue
		}
		if e.hdr.Typeflag != want.typ || e.hdr.Mode != want.mode || string(e.data) != want.data || e.hdr.Linkname != want.link || !e.hdr.ModTime.Equal(Epoch) {
			t.Errorf("%s: %+v %q", name, e.hdr, e.data)
		}
	}
}
