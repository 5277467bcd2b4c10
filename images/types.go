package images

import (
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image is one image as the CRI sees it: every containerd image record that
// points at the same config digest is folded into one Image.
type Image struct {
	// ID is the digest of the image config ("sha256:..."). PullImage returns
	// it as image_ref, and ListImages/ImageStatus report it as the id.
	ID string
	// RepoTags are normalized tagged references ("docker.io/library/busybox:latest").
	RepoTags []string
	// RepoDigests are normalized canonical references ("repo@sha256:<manifest digest>").
	RepoDigests []string
	// Size is the sum of the sizes of the image's content (manifest, config, layers) in bytes.
	Size uint64
	// Spec is the OCI image config (user, env, entrypoint, cmd, working dir, volumes, stop signal).
	Spec ocispec.Image
	// ChainID identifies the unpacked snapshot chain of the image's layers.
	ChainID string
	// Pinned images are never removed by kubelet's image garbage collection.
	Pinned bool
	// Labels are the containerd labels accel-cri keeps on the image record.
	Labels map[string]string
}

// AuthConfig carries CRI credentials for one pull. Exactly the CRI fields;
// an empty AuthConfig means anonymous.
type AuthConfig struct {
	Username      string
	Password      string
	Auth          string // base64("user:password")
	ServerAddress string
	IdentityToken string // refresh token, exchanged for a bearer token
	RegistryToken string // bearer token used as is
}

// FsUsage is the usage of the filesystem that holds the unpacked images.
type FsUsage struct {
	Mountpoint string
	UsedBytes  uint64
	InodesUsed uint64
	Timestamp  time.Time
}
