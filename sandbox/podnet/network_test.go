package podnet

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

const testConflist = `{
  "cniVersion": "1.0.0",
  "name": "acri-unit-net",
  "plugins": [
    {"type": "bridge", "bridge": "acri-unit0", "ipam": {"type": "host-local", "subnet": "10.251.0.0/24"}}
  ]
}`

func waitReady(t *testing.T, n *Network, want bool) error {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := n.Ready(context.Background())
		if (err == nil) == want {
			return err
		}
		if time.Now().After(deadline) {
			t.Fatalf("network ready=%v not reached: %v", want, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestNetworkFollowsConfDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "net.d")
	n, err := New(dir, []string{"/usr/lib/cni"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })

	err = n.Ready(context.Background())
	if !errors.Is(err, ErrNetworkNotReady) {
		t.Fatalf("empty conf dir: err = %v, want ErrNetworkNotReady", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "10-test.conflist"), []byte(testConflist), 0o644); err != nil {
		t.Fatal(err)
	}
	waitReady(t, n, true)
	if err := os.Remove(filepath.Join(dir, "10-test.conflist")); err != nil {
		t.Fatal(err)
	}
	waitReady(t, n, false)
}
