package managed

import (
	"fmt"
	"path/filepath"
	"strings"
)

// disabledPlugins are switched off in the managed containerd: its own CRI
// (accel-cri is the CRI), NRI (its socket path is host-global and would
// collide with a system containerd), and tracing exporters nobody configured.
var disabledPlugins = []string{
	"io.containerd.grpc.v1.cri",
	"io.containerd.cri.v1.images",
	"io.containerd.cri.v1.runtime",
	"io.containerd.podsandbox.controller.v1.podsandbox",
	"io.containerd.nri.v1.nri",
	"io.containerd.tracing.processor.v1.otlp",
	"io.containerd.internal.v1.tracing",
}

// renderConfig produces the containerd (config version 3) file. Every path
// containerd would otherwise take from the host defaults is set under
// accel-cri's own directories, and `imports` is emptied so a system
// /etc/containerd/conf.d cannot change the managed daemon.
func renderConfig(o Options, address string) []byte {
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by accel-cri for its managed containerd; regenerated on every start.\n")
	fmt.Fprintf(&b, "version = 3\n")
	fmt.Fprintf(&b, "root = %s\n", q(o.Root))
	fmt.Fprintf(&b, "state = %s\n", q(filepath.Join(o.State, "daemon")))
	fmt.Fprintf(&b, "imports = []\n")
	ds := make([]string, len(disabledPlugins))
	for i, p := range disabledPlugins {
		ds[i] = q(p)
	}
	fmt.Fprintf(&b, "disabled_plugins = [%s]\n\n", strings.Join(ds, ", "))
	fmt.Fprintf(&b, "[grpc]\n  address = %s\n\n", q(address))
	fmt.Fprintf(&b, "[ttrpc]\n  address = %s\n\n", q(address+".ttrpc"))
	fmt.Fprintf(&b, "[plugins]\n")
	fmt.Fprintf(&b, "  [plugins.'io.containerd.internal.v1.opt']\n    path = %s\n", q(filepath.Join(o.Root, "opt")))
	fmt.Fprintf(&b, "  [plugins.'io.containerd.image-verifier.v1.bindir']\n    bin_dir = %s\n", q(filepath.Join(o.Root, "image-verifier", "bin")))
	return []byte(b.String())
}
