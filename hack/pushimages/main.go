// Command pushimages builds accel-cri's test images (busybox and pause, see
// package testimages) and pushes them to a local registry over plain HTTP.
//
//	testimages --registry 127.0.0.1:5000 [--user u --password p] [--repo-prefix library/]
//
// It prints one line per image: "REF DIGEST", and "REPO@DIGEST" is the
// pinned reference. The password may also come from $TESTIMAGES_PASSWORD.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/accel-cri/accel-cri/hack/testimages"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "testimages:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		registry   = flag.String("registry", "127.0.0.1:5000", "registry host:port to push to (plain HTTP)")
		user       = flag.String("user", "", "user name for basic auth (optional)")
		password   = flag.String("password", "", "password for basic auth (default $TESTIMAGES_PASSWORD)")
		prefix     = flag.String("repo-prefix", "library/", "prefix of the repository names")
		busybox    = flag.String("busybox", testimages.BusyboxName+":"+testimages.BusyboxTag, "name:tag of the busybox image")
		pause      = flag.String("pause", testimages.PauseName+":"+testimages.PauseTag, "name:tag of the pause image")
		busyboxBin = flag.String("busybox-binary", testimages.DefaultBusyboxPath, "static busybox binary to put in the busybox image")
		pauseBin   = flag.String("pause-binary", "", "prebuilt static pause binary (default: build hack/pause of --module-dir)")
		moduleDir  = flag.String("module-dir", "", "accel-cri module root for building pause (default: walk up from the current directory to go.mod)")
	)
	flag.Parse()
	if flag.NArg() != 0 {
		return fmt.Errorf("unexpected arguments: %q", flag.Args())
	}
	if *password == "" {
		*password = os.Getenv("TESTIMAGES_PASSWORD")
	}
	if (*user == "") != (*password == "") {
		return fmt.Errorf("--user and --password go together")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *pauseBin == "" {
		dir := *moduleDir
		if dir == "" {
			wd, err := os.Getwd()
			if err != nil {
				return err
			}
			if dir, err = testimages.FindModuleRoot(wd); err != nil {
				return fmt.Errorf("find module root (use --module-dir or --pause-binary): %w", err)
			}
		}
		tmp, err := os.MkdirTemp("", "testimages-pause-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		if *pauseBin, err = testimages.BuildPause(ctx, dir, tmp); err != nil {
			return err
		}
	}

	bb, err := testimages.Busybox(testimages.WithBusyboxBinary(*busyboxBin))
	if err != nil {
		return err
	}
	p, err := testimages.Pause(ctx, *pauseBin)
	if err != nil {
		return err
	}

	var opts []remote.Option
	if *user != "" {
		opts = append(opts, testimages.WithBasicAuth(*user, *password))
	}
	for _, im := range []struct {
		nameTag string
		img     v1.Image
	}{
		{*busybox, bb},
		{*pause, p},
	} {
		ref := *registry + "/" + strings.TrimPrefix(*prefix+im.nameTag, "/")
		digest, err := testimages.Push(ctx, im.img, ref, opts...)
		if err != nil {
			return err
		}
		fmt.Printf("%s %s\n", ref, digest)
	}
	return nil
}
