package framework

import (
	"context"
	"testing"
	"time"

	"github.com/accel-cri/accel-cri/hack/testimages"
)

// PushFFmpegImage builds the ffmpeg image (the host's Debian ffmpeg and its
// libraries on busybox; hack/install-deps.sh installs ffmpeg) and pushes it
// to reg as PREFIX+"ffmpeg:latest". It is large, so only tests that run
// media jobs push it.
func PushFFmpegImage(t testing.TB, reg *Registry, prefix string) PushedImage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	img, err := testimages.FFmpeg("")
	if err != nil {
		t.Fatalf("PushFFmpegImage: %v", err)
	}
	ref := reg.Host() + "/" + prefix + testimages.FFmpegName + ":latest"
	d, err := testimages.Push(ctx, img, ref, reg.RemoteOptions(ctx)...)
	if err != nil {
		t.Fatalf("PushFFmpegImage: %v", err)
	}
	return PushedImage{Ref: ref, Digest: d}
}
