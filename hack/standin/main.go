// Command standin plays the programs of the container images the CRI
// conformance suite (critest) pulls, where the busybox they are built on has
// nothing that behaves the same (see hack/testimages/critest.go). It is one
// static binary; what it does depends on the name it runs as (argv[0], as
// busybox):
//
//   - nginx: the master process of the nginx test images. It renames itself
//     "nginx: master process <its command line>" (nginx's process title, which
//     critest looks for in /proc/1/cmdline), writes its PID to
//     /var/run/nginx.pid, and serves /usr/share/nginx/html over HTTP on the
//     port of the first "listen" in /etc/nginx/conf.d/*.conf (80 if none).
//     SIGQUIT stops it gracefully, SIGTERM and SIGINT at once; it exits 0.
//   - httpd-foreground, httpd: Apache httpd of the httpd test image: says
//     "httpd ..." on stderr and serves /usr/local/apache2/htdocs over HTTP on
//     the port of the first "Listen" in /usr/local/apache2/conf/httpd.conf
//     (80 if none). SIGWINCH (the image's stop signal, httpd's graceful stop),
//     SIGTERM and SIGINT end it with status 0.
//   - nnp: the nonewprivs image's program, installed setuid root: prints
//     "Effective uid: <euid>".
//   - pgrep: procps's pgrep [-f] PATTERN: the PIDs of the processes whose
//     name (with -f: command line) matches the extended regular expression.
//   - ipcs: ipcs [-m|-q|-s|-a]: the System V IPC objects of the IPC namespace.
//
// Build it static: CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' ./hack/standin
//
// Paths are read below $STANDIN_ROOT (default "/"), which only the tests set.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	os.Exit(run(os.Args, os.Getenv("STANDIN_ROOT")))
}

// run dispatches on the program name and returns the exit status.
func run(args []string, root string) int {
	if root == "" {
		root = "/"
	}
	name := filepath.Base(args[0])
	switch {
	case strings.HasPrefix(args[0], nginxTitlePrefix):
		return nginxMaster(root)
	case name == "nginx":
		return nginxStart(args)
	case name == "httpd-foreground", name == "httpd":
		return httpd(root)
	case name == "nnp":
		fmt.Printf("Effective uid: %d\n", os.Geteuid())
		return 0
	case name == "pgrep":
		return pgrep(root, args[1:], os.Getpid())
	case name == "ipcs":
		return ipcs(root, args[1:])
	}
	fmt.Fprintf(os.Stderr, "standin: unknown program name %q (nginx, httpd-foreground, httpd, nnp, pgrep, ipcs)\n", name)
	return 127
}
