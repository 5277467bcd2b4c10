// Package floor owns the benchmark's ideal CRI server: it answers kubelet's
// four List calls with answers encoded in advance, and does nothing else.
// Polling it with the same client, pods and machine as a real runtime
// gives the floor of List latency (client decoding, transport, scheduling)
// that no runtime can go below; its process gives the memory floor of a
// CRI server built on gRPC, cri-api and the containerd v2 client.
package floor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the codec wrapped
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Lister is the part of kubelet's CRI client whose answers are captured.
type Lister interface {
	ListPodSandbox(ctx context.Context, filter *runtimeapi.PodSandboxFilter) ([]*runtimeapi.PodSandbox, error)
	ListContainers(ctx context.Context, filter *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error)
	ListContainerStats(ctx context.Context, filter *runtimeapi.ContainerStatsFilter) ([]*runtimeapi.ContainerStats, error)
	ListPodSandboxStats(ctx context.Context, filter *runtimeapi.PodSandboxStatsFilter) ([]*runtimeapi.PodSandboxStats, error)
}

// Answers are the encoded responses of the four List calls.
type Answers struct {
	PodSandboxes    []byte
	Containers      []byte
	ContainerStats  []byte
	PodSandboxStats []byte
}

// Capture asks l the four List calls once and encodes the answers.
func Capture(ctx context.Context, l Lister) (*Answers, error) {
	pods, err := l.ListPodSandbox(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("ListPodSandbox: %w", err)
	}
	ctrs, err := l.ListContainers(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("ListContainers: %w", err)
	}
	cst, err := l.ListContainerStats(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("ListContainerStats: %w", err)
	}
	pst, err := l.ListPodSandboxStats(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("ListPodSandboxStats: %w", err)
	}
	a := &Answers{}
	for _, e := range []struct {
		dst *[]byte
		m   proto.Message
	}{
		{&a.PodSandboxes, &runtimeapi.ListPodSandboxResponse{Items: pods}},
		{&a.Containers, &runtimeapi.ListContainersResponse{Containers: ctrs}},
		{&a.ContainerStats, &runtimeapi.ListContainerStatsResponse{Stats: cst}},
		{&a.PodSandboxStats, &runtimeapi.ListPodSandboxStatsResponse{Stats: pst}},
	} {
		if *e.dst, err = proto.Marshal(e.m); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// answerFile is one answer's file in an answers directory.
type answerFile struct {
	name string
	data *[]byte
}

// files lists the answers' files in the order of the List calls.
func (a *Answers) files() []answerFile {
	return []answerFile{
		{"ListPodSandbox.pb", &a.PodSandboxes},
		{"ListContainers.pb", &a.Containers},
		{"ListContainerStats.pb", &a.ContainerStats},
		{"ListPodSandboxStats.pb", &a.PodSandboxStats},
	}
}

// Write stores the answers in dir, one file per call.
func (a *Answers) Write(dir string) error {
	for _, f := range a.files() {
		if err := os.WriteFile(filepath.Join(dir, f.name), *f.data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Read loads the answers Write stored in dir.
func Read(dir string) (*Answers, error) {
	a := &Answers{}
	for _, f := range a.files() {
		var err error
		if *f.data, err = os.ReadFile(filepath.Join(dir, f.name)); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// server answers from the decoded answers; the codec turns each of those
// (always the same pointers) back into the bytes they came from.
type server struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	pods  *runtimeapi.ListPodSandboxResponse
	ctrs  *runtimeapi.ListContainersResponse
	cstat *runtimeapi.ListContainerStatsResponse
	pstat *runtimeapi.ListPodSandboxStatsResponse
}

func (s *server) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{Version: "0.1.0", RuntimeName: "cri-floor", RuntimeVersion: "0", RuntimeApiVersion: "v1"}, nil
}

func (s *server) ListPodSandbox(context.Context, *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	return s.pods, nil
}

func (s *server) ListContainers(context.Context, *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	return s.ctrs, nil
}

func (s *server) ListContainerStats(context.Context, *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	return s.cstat, nil
}

func (s *server) ListPodSandboxStats(context.Context, *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	return s.pstat, nil
}

// codec is gRPC's protobuf codec, except that the canned answers are
// written as the bytes they were decoded from.
type codec struct {
	proto encoding.CodecV2
	raw   map[proto.Message][]byte
}

func (c *codec) Name() string { return "proto" }

func (c *codec) Unmarshal(data mem.BufferSlice, v any) error { return c.proto.Unmarshal(data, v) }

func (c *codec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(proto.Message); ok {
		if b, ok := c.raw[m]; ok {
			return mem.BufferSlice{mem.SliceBuffer(b)}, nil
		}
	}
	return c.proto.Marshal(v)
}

// NewServer returns a gRPC server with the CRI RuntimeService registered:
// Version and the four List calls answer, everything else is
// Unimplemented. The answers must decode as their responses.
func NewServer(a *Answers, opts ...grpc.ServerOption) (*grpc.Server, error) {
	s := &server{
		pods:  &runtimeapi.ListPodSandboxResponse{},
		ctrs:  &runtimeapi.ListContainersResponse{},
		cstat: &runtimeapi.ListContainerStatsResponse{},
		pstat: &runtimeapi.ListPodSandboxStatsResponse{},
	}
	c := &codec{proto: encoding.GetCodecV2("proto"), raw: map[proto.Message][]byte{}}
	if c.proto == nil {
		return nil, errors.New("grpc's proto codec is not registered")
	}
	for _, e := range []struct {
		name string
		b    []byte
		m    proto.Message
	}{
		{"ListPodSandbox", a.PodSandboxes, s.pods},
		{"ListContainers", a.Containers, s.ctrs},
		{"ListContainerStats", a.ContainerStats, s.cstat},
		{"ListPodSandboxStats", a.PodSandboxStats, s.pstat},
	} {
		if err := proto.Unmarshal(e.b, e.m); err != nil {
			return nil, fmt.Errorf("%s answer: %w", e.name, err)
		}
		c.raw[e.m] = e.b
	}
	g := grpc.NewServer(append([]grpc.ServerOption{grpc.ForceServerCodecV2(c)}, opts...)...)
	runtimeapi.RegisterRuntimeServiceServer(g, s)
	return g, nil
}
