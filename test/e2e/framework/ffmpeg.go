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

// FFmpegEncode is the shell of a media job: it encodes a generated 2 s
// 320x240 clip at 25 fps to /out/clip.mp4 with VAAPI on the first render
// node (what a pod given a GPU sees as /dev/dri/renderD128), or in software
// (libx264) when VAAPI cannot start, and prints encoder=vaapi or
// encoder=software. On the fake GPUs of the tests VAAPI fails.
const FFmpegEncode = `src="-f lavfi -i testsrc=duration=2:size=320x240:rate=25"
if ffmpeg -hide_banner -loglevel error -init_hw_device vaapi=va:/dev/dri/renderD128 -filter_hw_device va $src \
     -vf format=nv12,hwupload -c:v h264_vaapi -y /out/clip.mp4; then
  echo "encoder=vaapi"
else
  echo "VAAPI unavailable on /dev/dri/renderD128; falling back to software"
  ffmpeg -hide_banner -loglevel error $src -c:v libx264 -preset ultrafast -pix_fmt yuv420p -y /out/clip.mp4 || exit 1
  echo "encoder=software"
fi`
