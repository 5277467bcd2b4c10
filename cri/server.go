package cri

import (
	"context"
	"time"

	"github.com/accel-cri/accel-cri/images"
	"github.com/accel-cri/accel-cri/sandbox"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ImageStore is what the ImageService needs from the images package.
type ImageStore interface {
	Pull(ctx context.Context, ref string, auth *images.AuthConfig, opts ...images.PullOption) (images.Image, error)
	Get(ctx context.Context, ref string) (images.Image, error)
	List(ctx context.Context, filterRef string) ([]images.Image, error)
	Remove(ctx context.Context, ref string) error
	FsUsage(ctx context.Context) (images.FsUsage, error)
}

// Runtime is what the RuntimeService needs from the sandbox package.
type Runtime interface {
	RuntimeReady(ctx context.Context) error
	NetworkReady(ctx context.Context) error
	CgroupDriver() string
	// Handlers lists the runtime handlers, the default first as "".
	Handlers() []sandbox.HandlerInfo
	// HandlerSnapshotter is the snapshotter images pulled for a handler
	// are unpacked into; NotFound for an unknown handler.
	HandlerSnapshotter(name string) (string, error)

	RunPod(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handler string) (string, error)
	StopPod(ctx context.Context, id string) error
	RemovePod(ctx context.Context, id string) error
	PodStatus(ctx context.Context, id string, verbose bool) (*runtimeapi.PodSandboxStatus, []*runtimeapi.ContainerStatus, map[string]string, error)
	ListPods(f sandbox.PodFilter) []*runtimeapi.PodSandbox
	UpdatePodResources(ctx context.Context, id string, overhead, resources *runtimeapi.LinuxContainerResources) error

	CreateContainer(ctx context.Context, podID string, cfg *runtimeapi.ContainerConfig) (string, error)
	StartContainer(ctx context.Context, id string) error
	StopContainer(ctx context.Context, id string, timeout int64) error
	RemoveContainer(ctx context.Context, id string) error
	ContainerStatus(ctx context.Context, id string, verbose bool) (*runtimeapi.ContainerStatus, map[string]string, error)
	ListContainers(f sandbox.ContainerFilter) []*runtimeapi.Container
	UpdateContainerResources(ctx context.Context, id string, res *runtimeapi.LinuxContainerResources) error
	ReopenContainerLog(ctx context.Context, id string) error

	ContainerStats(ctx context.Context, id string) (*runtimeapi.ContainerStats, error)
	ListContainerStats(ctx context.Context, f sandbox.ContainerFilter) ([]*runtimeapi.ContainerStats, error)
	PodStats(ctx context.Context, id string) (*runtimeapi.PodSandboxStats, error)
	ListPodStats(ctx context.Context, f sandbox.PodFilter) ([]*runtimeapi.PodSandboxStats, error)
	MetricDescriptors() []*runtimeapi.MetricDescriptor
	PodMetrics(ctx context.Context) ([]*runtimeapi.PodSandboxMetrics, error)

	Subscribe() (<-chan *runtimeapi.ContainerEventResponse, func())

	// Exec, attach and port-forward: the streams themselves go through the
	// streaming server; these check their target and run ExecSync.
	RunningContainer(id string) (string, error)
	ReadyPod(id string) (string, error)
	ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) (sandbox.ExecSyncResult, error)
}

// VersionInfo names this build.
type VersionInfo struct {
	Version string
	Commit  string
}

// Server implements both CRI services.
type Server struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer

	images   ImageStore
	runtime  Runtime
	streamer Streamer
	version  VersionInfo
	info     func() map[string]any
}

// Option configures a Server.
type Option func(*Server)

// WithVersion sets the version reported by Version.
func WithVersion(v VersionInfo) Option { return func(s *Server) { s.version = v } }

// WithStatusInfo adds the verbose Status info (config, managed containerd).
func WithStatusInfo(f func() map[string]any) Option { return func(s *Server) { s.info = f } }

// NewServer returns a CRI server over the given domain services.
func NewServer(imgs ImageStore, rt Runtime, opts ...Option) *Server {
	s := &Server{images: imgs, runtime: rt, version: VersionInfo{Version: "dev"}}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Register adds both CRI services to g.
func (s *Server) Register(g *grpc.Server) {
	runtimeapi.RegisterRuntimeServiceServer(g, s)
	runtimeapi.RegisterImageServiceServer(g, s)
}
