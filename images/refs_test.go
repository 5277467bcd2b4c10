package images

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

const (
	hex64  = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	hex64b = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
)

func TestParseRef(t *testing.T) {
	for _, tc := range []struct {
		desc    string
		in      string
		want    string
		wantErr string // substring; "" = no error
	}{
		{desc: "familiar name gets docker.io/library and latest", in: "busybox", want: "docker.io/library/busybox:latest"},
		{desc: "familiar name with tag", in: "busybox:1.36", want: "docker.io/library/busybox:1.36"},
		{desc: "user repo on hub", in: "someone/app:v1", want: "docker.io/someone/app:v1"},
		{desc: "fully qualified", in: "registry.k8s.io/pause:3.10", want: "registry.k8s.io/pause:3.10"},
		{desc: "registry with port", in: "127.0.0.1:5000/test/foo", want: "127.0.0.1:5000/test/foo:latest"},
		{desc: "localhost registry", in: "localhost:5000/foo:1", want: "localhost:5000/foo:1"},
		{desc: "digest", in: "busybox@sha256:" + hex64, want: "docker.io/library/busybox@sha256:" + hex64},
		{desc: "tag and digest keeps the digest", in: "busybox:1@sha256:" + hex64, want: "docker.io/library/busybox@sha256:" + hex64},
		{desc: "index.docker.io is docker.io", in: "index.docker.io/library/busybox:1", want: "docker.io/library/busybox:1"},
		{desc: "empty", in: "", wantErr: "empty"},
		{desc: "upper case repository", in: "Busybox:1", wantErr: "must be lowercase"},
		{desc: "bad characters", in: "busy box", wantErr: "invalid reference format"},
		{desc: "bad tag", in: "busybox:-x", wantErr: "invalid reference format"},
		{desc: "short digest", in: "busybox@sha256:abc", wantErr: "invalid"},
		{desc: "unknown digest algorithm", in: "busybox@md5:" + hex64, wantErr: "invalid"},
		{desc: "trailing colon", in: "busybox:", wantErr: "invalid reference format"},
		{desc: "image id is not pullable", in: "sha256:" + hex64, wantErr: "is an image id"},
		{desc: "bare 64-hex id is not pullable", in: hex64, wantErr: "is an image id"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := parseRef(tc.in)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("parseRef(%q) = %v, want error containing %q", tc.in, got, tc.wantErr)
				}
				if !errdefs.IsInvalidArgument(err) {
					t.Errorf("parseRef(%q) error %v is not InvalidArgument", tc.in, err)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("parseRef(%q) error %q does not contain %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseRef(%q): %v", tc.in, err)
			}
			if got.String() != tc.want {
				t.Errorf("parseRef(%q) = %q, want %q", tc.in, got.String(), tc.want)
			}
		})
	}
}

func TestParseID(t *testing.T) {
	for _, tc := range []struct {
		desc   string
		in     string
		want   string
		wantOK bool
	}{
		{desc: "full sha256 id", in: "sha256:" + hex64, want: "sha256:" + hex64, wantOK: true},
		{desc: "bare 64 hex", in: hex64, want: "sha256:" + hex64, wantOK: true},
		{desc: "upper-case hex is not an id", in: strings.ToUpper(hex64)},
		{desc: "short", in: "sha256:abc"},
		{desc: "name", in: "busybox"},
		{desc: "tagged name", in: "busybox:latest"},
		{desc: "63 hex", in: hex64[:63]},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, ok := parseID(tc.in)
			if ok != tc.wantOK || got != tc.want {
				t.Errorf("parseID(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestParseIDPrefix(t *testing.T) {
	for _, tc := range []struct {
		desc   string
		in     string
		want   string
		wantOK bool
	}{
		{desc: "bare prefix", in: "0123ab", want: "sha256:0123ab", wantOK: true},
		{desc: "prefixed", in: "sha256:0123", want: "sha256:0123", wantOK: true},
		{desc: "full", in: hex64, want: "sha256:" + hex64, wantOK: true},
		{desc: "too short", in: "012"},
		{desc: "not hex", in: "busybox"},
		{desc: "upper case", in: "ABCD"},
		{desc: "too long", in: hex64 + "0"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, ok := parseIDPrefix(tc.in)
			if ok != tc.wantOK || got != tc.want {
				t.Errorf("parseIDPrefix(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestClassifyName(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want recordKind
	}{
		{"sha256:" + hex64, kindID},
		{"docker.io/library/busybox:latest", kindTag},
		{"127.0.0.1:5000/test/foo:1", kindTag},
		{"docker.io/library/busybox@sha256:" + hex64, kindDigest},
		{"busybox:latest", kindOther}, // not normalized
		{"docker.io/library/busybox", kindOther},
		{"import-2024", kindOther},
		{hex64, kindOther}, // bare hex is no record name accel-cri writes
	} {
		if got := classifyName(tc.in); got != tc.want {
			t.Errorf("classifyName(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
