package cluster

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// proc is one control-plane process, its output in a log file.
type proc struct {
	name, log string
	cmd       *exec.Cmd
	exited    chan struct{}
}

// startProc starts bin with args, its stdout and stderr to dir/<name>.log.
// Cleanup stops it (only this pid: SIGTERM, SIGKILL after 20s) and logs
// its tail when the test failed. It dies with the test binary.
func startProc(t testing.TB, logDir, name, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, log: logDir + "/" + name + ".log", exited: make(chan struct{})}
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s log tail (%s):\n%s", name, p.log, p.tail(40))
		}
		p.stop()
	})
	return p
}

func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (p *proc) stop() {
	if !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// tail returns the last n lines of the log.
func (p *proc) tail(n int) string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// waitHTTPS polls url until it answers 200 with a body starting with want,
// failing the test when p exits or timeout passes.
func (p *proc) waitHTTPS(t testing.TB, url string, tlsConfig *tls.Config, want string, timeout time.Duration) {
	t.Helper()
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig}}
	deadline := time.Now().Add(timeout)
	var last string
	for {
		if !p.running() {
			t.Fatalf("%s exited: %v\n%s", p.name, p.cmd.ProcessState, p.tail(40))
		}
		resp, err := c.Get(url)
		if err == nil {
			var b [512]byte
			n, _ := resp.Body.Read(b[:])
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.HasPrefix(strings.TrimSpace(string(b[:n])), want) {
				return
			}
			last = fmt.Sprintf("%s: %s", resp.Status, b[:n])
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s not ready after %s: %s\n%s", p.name, url, timeout, last, p.tail(40))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
