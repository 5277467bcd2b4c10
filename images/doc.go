// Package images owns the node's image store on containerd for the CRI
// ImageService: pulling (CRI credentials, containerd-style hosts.toml
// registry configuration for mirrors, plain-HTTP and self-signed registries,
// a progress timeout that cancels stalled pulls), unpacking into the
// snapshotter, listing, status, removal and image filesystem usage.
//
// It keeps an in-memory index from image ids (config digests) to their
// references, rebuilt from containerd's image store on start; containerd
// stays the source of truth. It must not know about pods or gRPC.
//
// # Use
//
//	client, err := containerd.New("/run/accel-cri/containerd/containerd.sock",
//		containerd.WithDefaultNamespace("accel-cri"))
//	...
//	svc, err := images.New(ctx, client,
//		images.WithRegistryConfigDir("/etc/accel-cri/certs.d"), // <dir>/docker.io/hosts.toml ...
//		images.WithPinnedImages("registry.k8s.io/pause:3.10"),
//		images.WithPullProgressTimeout(5*time.Minute))
//	...
//	img, err := svc.Pull(ctx, "busybox:1.36", &images.AuthConfig{Username: "u", Password: "p"})
//	// img.ID is the config digest; img.RepoTags is
//	// ["docker.io/library/busybox:1.36"], img.RepoDigests
//	// ["docker.io/library/busybox@sha256:<manifest or index digest>"].
//	same, err := svc.Get(ctx, img.ID)           // or by tag, digest or id prefix
//	list, err := svc.List(ctx, "busybox")       // every image of the repository
//	err = svc.Remove(ctx, "busybox:1.36")       // all its records; absent is fine
//	usage, err := svc.FsUsage(ctx)
//
// # Containerd records
//
// A pulled image has up to three containerd image records, all pointing at
// the same target and labelled ManagedLabel=true: the tag
// ("docker.io/library/busybox:1.36"), the digest reference
// ("docker.io/library/busybox@sha256:...") and the id ("sha256:<config
// digest>"). The id record keeps the image (and its content and snapshots)
// alive when its tags go, and is the name other packages pass to
// client.GetImage. New gives an id record to any image in the namespace that
// lacks one.
//
// # Errors
//
// Errors carry github.com/containerd/errdefs classes: ErrInvalidArgument
// (malformed reference or credentials), ErrNotFound, ErrUnauthenticated
// (registry refused or wanted credentials), ErrPermissionDenied,
// ErrUnavailable (registry unreachable, 5xx), ErrResourceExhausted (429), and
// context.DeadlineExceeded for a pull cancelled by the progress timeout
// (errdefs.IsDeadlineExceeded). The registry's own error stays in the chain.
package images
