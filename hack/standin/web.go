package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// nginxTitlePrefix starts nginx's master process title.
const nginxTitlePrefix = "nginx: master process "

// nginxStart re-executes the binary under nginx's master process title, as
// nginx rewrites its argv: "nginx: master process nginx -g daemon off;". The
// file keeps its name, so the process name (comm) stays "nginx" for pidof.
func nginxStart(args []string) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "nginx: %v\n", err)
		return 1
	}
	title := nginxTitlePrefix + filepath.Base(args[0])
	if len(args) > 1 {
		title += " " + strings.Join(args[1:], " ")
	}
	err = syscall.Exec(exe, []string{title}, os.Environ())
	fmt.Fprintf(os.Stderr, "nginx: exec %s: %v\n", exe, err)
	return 1
}

// nginxMaster serves like nginx's default server: the document root over
// HTTP on the configured port, its PID in /var/run/nginx.pid.
func nginxMaster(root string) int {
	port, err := nginxListenPort(filepath.Join(root, "etc/nginx/conf.d"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "nginx: [emerg] %v\n", err)
		return 1
	}
	pidFile := filepath.Join(root, "var/run/nginx.pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "nginx: [emerg] %v\n", err)
		return 1
	}
	defer os.Remove(pidFile)
	return serve("nginx", ":"+strconv.Itoa(port), filepath.Join(root, "usr/share/nginx/html"),
		map[os.Signal]bool{syscall.SIGQUIT: true, syscall.SIGTERM: false, syscall.SIGINT: false})
}

// nginxListenRE matches an nginx listen directive with a port: "listen 80;",
// "listen [::]:80 default_server;", "listen 0.0.0.0:12003;".
var nginxListenRE = regexp.MustCompile(`^\s*listen\s+(?:\S*:)?([0-9]+)(?:\s[^;]*)?;`)

// httpdListenRE matches Apache's Listen directive: "Listen 80",
// "Listen 0.0.0.0:8080".
var httpdListenRE = regexp.MustCompile(`^\s*Listen\s+(?:\S*:)?([0-9]+)\s*$`)

// nginxListenPort returns the port of the first listen directive in dir's
// *.conf files (in name order), or 80 when there is none.
func nginxListenPort(dir string) (int, error) {
	confs, err := filepath.Glob(filepath.Join(dir, "*.conf"))
	if err != nil {
		return 0, err
	}
	sort.Strings(confs)
	for _, c := range confs {
		if p, found, err := directivePort(c, nginxListenRE); err != nil || found {
			return p, err
		}
	}
	return 80, nil
}

// directivePort returns the port re captures from the first matching line
// of file; found is false when no line matches or the file does not exist.
func directivePort(file string, re *regexp.Regexp) (port int, found bool, err error) {
	f, err := os.Open(file)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			p, err := strconv.Atoi(m[1])
			if err != nil || p < 1 || p > 65535 {
				return 0, false, fmt.Errorf("invalid port in %q of %s", strings.TrimSpace(sc.Text()), file)
			}
			return p, true, nil
		}
	}
	return 0, false, sc.Err()
}

// httpd serves like the httpd image: htdocs on the port of the first Listen
// in conf/httpd.conf (80 if none); the first line on stderr names httpd, as
// Apache's start-up messages do.
func httpd(root string) int {
	apache := filepath.Join(root, "usr/local/apache2")
	port, found, err := directivePort(filepath.Join(apache, "conf/httpd.conf"), httpdListenRE)
	if err != nil {
		fmt.Fprintf(os.Stderr, "httpd: %v\n", err)
		return 1
	}
	if !found {
		port = 80
	}
	docs := filepath.Join(apache, "htdocs")
	fmt.Fprintf(os.Stderr, "httpd (accel-cri stand-in for Apache/2.4.39): serving %s on :%d\n", docs, port)
	return serve("httpd", ":"+strconv.Itoa(port), docs,
		map[os.Signal]bool{syscall.SIGWINCH: true, syscall.SIGTERM: false, syscall.SIGINT: false})
}

// serve serves the files of dir on addr until one of stops arrives: a
// graceful stop (true) lets requests in flight finish (at most 10s), the
// others close at once. It returns the exit status: 0 after a stop signal.
func serve(name, addr, dir string, stops map[os.Signal]bool) int {
	sigs := make(chan os.Signal, 1)
	for s := range stops {
		signal.Notify(sigs, s)
	}
	logger := log.New(os.Stdout, "", 0)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 1
	}
	files := http.FileServer(http.Dir(dir))
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
			files.ServeHTTP(rec, r)
			logger.Printf("%s - - [%s] %q %d %q", hostOf(r.RemoteAddr), time.Now().Format("02/Jan/2006:15:04:05 -0700"),
				r.Method+" "+r.URL.RequestURI()+" "+r.Proto, rec.status, r.UserAgent())
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 1
	case s := <-sigs:
		if stops[s] {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				fmt.Fprintf(os.Stderr, "%s: shutdown: %v\n", name, err)
			}
		} else {
			srv.Close()
		}
		return 0
	}
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
