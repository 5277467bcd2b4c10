package cri

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/accel-cri/accel-cri/images"
	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// maxRefLen bounds an image reference; registries reject far shorter ones,
// and a bound keeps a hostile request from reaching the parser with megabytes.
const maxRefLen = 4096

func validateImageRef(field, ref string) error {
	switch {
	case ref == "":
		return invalid("%s: image reference is required", field)
	case len(ref) > maxRefLen:
		return invalid("%s: image reference is %d bytes, more than %d", field, len(ref), maxRefLen)
	case !utf8.ValidString(ref):
		return invalid("%s: image reference is not valid UTF-8", field)
	case strings.ContainsAny(ref, " \t\r\n\x00"):
		return invalid("%s: image reference %q contains white space or NUL", field, ref)
	}
	return nil
}

// PullImage pulls and unpacks an image and returns its id as image_ref.
func (s *Server) PullImage(ctx context.Context, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	ref := req.GetImage().GetImage()
	if err := validateImageRef("image.image", ref); err != nil {
		return nil, err
	}
	// The pod's namespace selects the signature policy (<dir>/<ns>.json,
	// else the default); a pull without a pod (crictl) gets the default.
	opts := []images.PullOption{images.WithPullNamespace(req.GetSandboxConfig().GetMetadata().GetNamespace())}
	if h := req.GetImage().GetRuntimeHandler(); h != "" {
		// The image is unpacked for the handler that will run it (its
		// snapshotter); an unknown handler is NotFound, as in RunPodSandbox.
		sn, err := s.runtime.HandlerSnapshotter(h)
		if err != nil {
			return nil, err
		}
		opts = append(opts, images.WithPullSnapshotter(sn))
	}
	img, err := s.images.Pull(ctx, ref, toAuth(req.GetAuth()), opts...)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PullImageResponse{ImageRef: img.ID}, nil
}

func toAuth(a *runtimeapi.AuthConfig) *images.AuthConfig {
	if a == nil {
		return nil
	}
	return &images.AuthConfig{
		Username:      a.GetUsername(),
		Password:      a.GetPassword(),
		Auth:          a.GetAuth(),
		ServerAddress: a.GetServerAddress(),
		IdentityToken: a.GetIdentityToken(),
		RegistryToken: a.GetRegistryToken(),
	}
}

// ImageStatus reports one image. An image that is not present is an empty
// answer, not an error: kubelet asks before every pull.
func (s *Server) ImageStatus(ctx context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	ref := req.GetImage().GetImage()
	if err := validateImageRef("image.image", ref); err != nil {
		return nil, err
	}
	img, err := s.images.Get(ctx, ref)
	if errors.Is(err, errdefs.ErrNotFound) {
		return &runtimeapi.ImageStatusResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ImageStatusResponse{Image: toCRIImage(img)}
	if req.GetVerbose() {
		info, err := verboseInfo(map[string]any{"info": imageInfo{ImageSpec: img.Spec, ChainID: img.ChainID, Labels: img.Labels}})
		if err != nil {
			return nil, err
		}
		resp.Info = info
	}
	return resp, nil
}

// imageInfo is the verbose ImageStatus payload, shaped like containerd's so
// tools that read one can read the other.
type imageInfo struct {
	ImageSpec any               `json:"imageSpec"`
	ChainID   string            `json:"chainID"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// ListImages lists images, optionally only those matching filter.image.
func (s *Server) ListImages(ctx context.Context, req *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	list, err := s.listImages(ctx, req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListImagesResponse{Images: list}, nil
}

// StreamImages is ListImages in pages, for nodes with more images than fit
// in one gRPC message.
func (s *Server) StreamImages(req *runtimeapi.StreamImagesRequest, stream runtimeapi.ImageService_StreamImagesServer) error {
	list, err := s.listImages(stream.Context(), req.GetFilter())
	if err != nil {
		return err
	}
	return sendPages(list, func(page []*runtimeapi.Image) error {
		return stream.Send(&runtimeapi.StreamImagesResponse{Images: page})
	})
}

func (s *Server) listImages(ctx context.Context, f *runtimeapi.ImageFilter) ([]*runtimeapi.Image, error) {
	filter := f.GetImage().GetImage()
	if filter != "" {
		if err := validateImageRef("filter.image.image", filter); err != nil {
			return nil, err
		}
	}
	imgs, err := s.images.List(ctx, filter)
	if err != nil {
		return nil, err
	}
	out := make([]*runtimeapi.Image, 0, len(imgs))
	for _, img := range imgs {
		out = append(out, toCRIImage(img))
	}
	return out, nil
}

// RemoveImage removes an image by id, tag or digest with all its references.
// Removing an absent image succeeds, as the CRI asks.
func (s *Server) RemoveImage(ctx context.Context, req *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	ref := req.GetImage().GetImage()
	if err := validateImageRef("image.image", ref); err != nil {
		return nil, err
	}
	if err := s.images.Remove(ctx, ref); err != nil {
		return nil, err
	}
	return &runtimeapi.RemoveImageResponse{}, nil
}

// ImageFsInfo reports the usage of the filesystem holding unpacked images.
// Container writable layers live in the same snapshotter, so no separate
// container filesystem is reported.
func (s *Server) ImageFsInfo(ctx context.Context, req *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	u, err := s.images.FsUsage(ctx)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ImageFsInfoResponse{ImageFilesystems: []*runtimeapi.FilesystemUsage{{
		Timestamp:  u.Timestamp.UnixNano(),
		FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: u.Mountpoint},
		UsedBytes:  &runtimeapi.UInt64Value{Value: u.UsedBytes},
		InodesUsed: &runtimeapi.UInt64Value{Value: u.InodesUsed},
	}}}, nil
}

func toCRIImage(img images.Image) *runtimeapi.Image {
	out := &runtimeapi.Image{
		Id:          img.ID,
		RepoTags:    img.RepoTags,
		RepoDigests: img.RepoDigests,
		Size:        img.Size,
		Spec:        &runtimeapi.ImageSpec{Image: img.ID},
		Pinned:      img.Pinned,
	}
	uid, name := imageUser(img.Spec.Config.User)
	if uid != nil {
		out.Uid = &runtimeapi.Int64Value{Value: *uid}
	}
	out.Username = name
	return out
}

// imageUser splits an image config's User ("name", "uid", "uid:gid",
// "name:group") into the numeric uid or the user name kubelet checks
// runAsNonRoot against.
func imageUser(user string) (uid *int64, name string) {
	u, _, _ := strings.Cut(user, ":")
	if u == "" {
		return nil, ""
	}
	if n, err := strconv.ParseInt(u, 10, 64); err == nil && n >= 0 {
		return &n, ""
	}
	return nil, u
}
