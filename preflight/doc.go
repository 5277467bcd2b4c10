// Package preflight owns `accel-cri check`: it says, item by item, whether
// this node can run accel-cri with a given configuration, and how to fix
// what is missing. Each check is a small function over a Host (files,
// directories, PATH lookups, commands, an overlay mount, the oom_score_adj
// probe), so tests fake a whole node and the real command reads the real
// one. It must not change the host beyond a temporary overlay mount that it
// removes again.
//
//	results := preflight.Run(ctx, cfg, preflight.WithHost(preflight.OSHost{}))
//	failed := preflight.Print(os.Stdout, results)
//
// prints lines like
//
//	[OK] containerd: /usr/local/bin/containerd v2.4.2 (expected v2.4.2)
//	[WARN] oom_score_adj: lowering is not permitted (no CAP_SYS_RESOURCE) ...
//	  fix: run accel-cri with CAP_SYS_RESOURCE ...
package preflight
