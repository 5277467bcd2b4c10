package debugserver

import (
	"context"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func get(t *testing.T, sock, path string) (int, string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}, Timeout: 10 * time.Second}
	resp, err := c.Get("http://debug" + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServesPprofOnPrivateSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "run", "debug.sock")
	s, err := Start(sock)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Type() != fs.ModeSocket || st.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %s, want a socket with 0600", st.Mode())
	}
	for _, tc := range []struct {
		desc, path, want string
	}{
		{desc: "goroutine count", path: "/debug/pprof/goroutine?debug=1", want: "goroutine profile: total "},
		{desc: "goroutine dump", path: "/debug/pprof/goroutine?debug=2", want: "goroutine "},
		{desc: "index", path: "/debug/pprof/", want: "heap"},
		{desc: "cmdline", path: "/debug/pprof/cmdline", want: "debugserver"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			code, body := get(t, sock, tc.path)
			if code != http.StatusOK || !strings.Contains(body, tc.want) {
				t.Errorf("GET %s: %d %.200q, want 200 containing %q", tc.path, code, body, tc.want)
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket still there after Close: %v", err)
	}
	if _, err := net.Dial("unix", sock); err == nil {
		t.Error("socket still answers after Close")
	}
}

func TestClaimingTheSocket(t *testing.T) {
	for _, tc := range []struct {
		desc    string
		prepare func(t *testing.T, path string)
		wantErr string
	}{
		{desc: "fresh path", prepare: func(*testing.T, string) {}},
		{desc: "stale socket is replaced", prepare: func(t *testing.T, path string) {
			l, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			l.(*net.UnixListener).SetUnlinkOnClose(false)
			l.Close()
		}},
		{desc: "live socket is refused", wantErr: "in use", prepare: func(t *testing.T, path string) {
			l, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
		}},
		{desc: "symlink is refused", wantErr: "symlink", prepare: func(t *testing.T, path string) {
			target := filepath.Join(filepath.Dir(path), "target")
			if err := os.WriteFile(target, []byte("keep"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, path); err != nil {
				t.Fatal(err)
			}
		}},
		{desc: "regular file is refused", wantErr: "not a socket", prepare: func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("keep"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{desc: "relative path is refused", wantErr: "absolute", prepare: func(*testing.T, string) {}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "debug.sock")
			tc.prepare(t, path)
			if tc.desc == "relative path is refused" {
				path = "debug.sock"
			}
			before, _ := os.Lstat(path)
			s, err := Start(path)
			if tc.wantErr != "" {
				if err == nil {
					s.Close(context.Background())
					t.Fatalf("Start succeeded, want error %q", tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %q, want %q", err, tc.wantErr)
				}
				if after, _ := os.Lstat(path); before != nil && (after == nil || after.Mode() != before.Mode()) {
					t.Errorf("refused path was changed: %v -> %v", before.Mode(), after)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close(context.Background())
			if code, _ := get(t, path, "/debug/pprof/goroutine?debug=1"); code != http.StatusOK {
				t.Errorf("status %d", code)
			}
			if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".debug.sock.*")); len(left) != 0 {
				t.Errorf("temporary socket left: %v", left)
			}
		})
	}
}
