package signature

import (
	"os"
	"testing"

	"github.com/containerd/log"
)

func TestMain(m *testing.M) {
	// containerd's resolver logs every 404 at info; the tests make many.
	_ = log.SetLevel("warn")
	os.Exit(m.Run())
}
