package cri

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fill sets every field of m, recursively to depth, with values derived
// from *n: a field added to cri-api is covered without editing the test.
func fill(m protoreflect.Message, depth int, n *int) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.ContainingOneof() != nil && m.WhichOneof(fd.ContainingOneof()) != nil {
			continue
		}
		switch {
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			for range 2 {
				mp.Set(scalar(fd.MapKey(), n).MapKey(), value(mp.NewValue, fd.MapValue(), depth, n))
			}
		case fd.IsList():
			l := m.Mutable(fd).List()
			for range 2 {
				l.Append(value(l.NewElement, fd, depth, n))
			}
		case fd.Message() != nil:
			if depth > 0 {
				fill(m.Mutable(fd).Message(), depth-1, n)
			}
		default:
			m.Set(fd, scalar(fd, n))
		}
	}
}

func value(newValue func() protoreflect.Value, fd protoreflect.FieldDescriptor, depth int, n *int) protoreflect.Value {
	if fd.Message() == nil {
		return scalar(fd, n)
	}
	v := newValue()
	if depth > 0 {
		fill(v.Message(), depth-1, n)
	}
	return v
}

func scalar(fd protoreflect.FieldDescriptor, n *int) protoreflect.Value {
	*n++
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		return protoreflect.ValueOfEnum(vals.Get(*n % vals.Len()).Number())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(*n))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(int64(*n) << 33)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(*n))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(uint64(*n) << 33)
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(*n) / 3)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(float64(*n) / 3)
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(fmt.Sprintf("s%d", *n))
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte{byte(*n), 0, 0xff})
	}
	panic("unhandled kind " + fd.Kind().String())
}

func full[T proto.Message](m T) T {
	n := 0
	fill(m.ProtoReflect(), 6, &n)
	return m
}

func marshal(t *testing.T, c encoding.CodecV2, v any) []byte {
	t.Helper()
	data, err := c.Marshal(v)
	if err != nil {
		t.Fatalf("marshal %T: %v", v, err)
	}
	defer data.Free()
	return data.Materialize()
}

// Every list answer the codec encodes from cached items is a message with
// one field, the items, number 1; what it writes reads back as exactly
// the answer, with every field of every item set.
func TestListCodecAnswers(t *testing.T) {
	c := newListCodec()
	for _, resp := range []proto.Message{
		&runtimeapi.ListPodSandboxResponse{Items: []*runtimeapi.PodSandbox{full(&runtimeapi.PodSandbox{}), full(&runtimeapi.PodSandbox{})}},
		&runtimeapi.StreamPodSandboxesResponse{PodSandboxes: []*runtimeapi.PodSandbox{full(&runtimeapi.PodSandbox{})}},
		&runtimeapi.ListContainersResponse{Containers: []*runtimeapi.Container{full(&runtimeapi.Container{}), full(&runtimeapi.Container{})}},
		&runtimeapi.StreamContainersResponse{Containers: []*runtimeapi.Container{full(&runtimeapi.Container{})}},
		&runtimeapi.ListContainerStatsResponse{Stats: []*runtimeapi.ContainerStats{full(&runtimeapi.ContainerStats{})}},
		&runtimeapi.StreamContainerStatsResponse{ContainerStats: []*runtimeapi.ContainerStats{full(&runtimeapi.ContainerStats{})}},
		&runtimeapi.ListPodSandboxStatsResponse{Stats: []*runtimeapi.PodSandboxStats{full(&runtimeapi.PodSandboxStats{})}},
		&runtimeapi.StreamPodSandboxStatsResponse{PodSandboxStats: []*runtimeapi.PodSandboxStats{full(&runtimeapi.PodSandboxStats{})}},
		&runtimeapi.ListPodSandboxMetricsResponse{PodMetrics: []*runtimeapi.PodSandboxMetrics{full(&runtimeapi.PodSandboxMetrics{}), full(&runtimeapi.PodSandboxMetrics{})}},
		&runtimeapi.StreamPodSandboxMetricsResponse{PodSandboxMetrics: []*runtimeapi.PodSandboxMetrics{full(&runtimeapi.PodSandboxMetrics{})}},
		// Not a list: protobuf's own encoding.
		full(&runtimeapi.PodSandboxStatusResponse{}),
		// Empty lists.
		&runtimeapi.ListPodSandboxResponse{},
		&runtimeapi.ListContainerStatsResponse{},
	} {
		name := string(resp.ProtoReflect().Descriptor().Name())
		t.Run(name, func(t *testing.T) {
			fields := resp.ProtoReflect().Descriptor().Fields()
			if listAnswer(resp) {
				if fields.Len() != 1 || fields.Get(0).Number() != listField || !fields.Get(0).IsList() || fields.Get(0).Message() == nil {
					t.Fatalf("%s is no longer one repeated message field number %d: the codec would drop fields", name, listField)
				}
			}
			for range 2 { // the second time from the cache
				got := resp.ProtoReflect().New().Interface()
				if err := proto.Unmarshal(marshal(t, c, resp), got); err != nil {
					t.Fatal(err)
				}
				if !proto.Equal(got, resp) {
					t.Fatalf("read back\n%v\nwant\n%v", got, resp)
				}
			}
		})
	}
	if _, err := c.Marshal(&runtimeapi.ListContainersResponse{Containers: []*runtimeapi.Container{nil}}); err == nil {
		t.Error("a nil item was encoded")
	}
}

// listAnswer reports whether the codec encodes m from cached items.
func listAnswer(m proto.Message) bool {
	c := newListCodec()
	if _, err := c.Marshal(m); err != nil {
		return false
	}
	return c.pods.len()+c.containers.len()+c.ctrStats.len()+c.podStats.len()+c.podMetrics.len() > 0
}

// An item is encoded once while it lives, a new item (a changed pod) gets
// its own encoding, and a collected item's encoding is dropped.
func TestListCodecCachesPerItem(t *testing.T) {
	c := newListCodec()
	a := &runtimeapi.PodSandbox{Id: "a", State: runtimeapi.PodSandboxState_SANDBOX_READY, Labels: map[string]string{"k": "v"}}
	b := &runtimeapi.PodSandbox{Id: "b"}
	first := marshal(t, c, &runtimeapi.ListPodSandboxResponse{Items: []*runtimeapi.PodSandbox{a, b}})
	if n := c.pods.len(); n != 2 {
		t.Fatalf("%d cached items, want 2", n)
	}
	encA, _ := c.pods.get(a, func() ([]byte, error) { t.Fatal("a encoded again"); return nil, nil })
	if want, _ := proto.Marshal(a); string(encA) != string(want) {
		t.Errorf("cached %x, want %x", encA, want)
	}
	again := marshal(t, c, &runtimeapi.ListPodSandboxResponse{Items: []*runtimeapi.PodSandbox{a, b}})
	if string(again) != string(first) {
		t.Error("the same items encoded differently")
	}

	a2 := &runtimeapi.PodSandbox{Id: "a", State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY, Labels: a.Labels}
	var got runtimeapi.ListPodSandboxResponse
	if err := proto.Unmarshal(marshal(t, c, &runtimeapi.ListPodSandboxResponse{Items: []*runtimeapi.PodSandbox{a2}}), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Items) != 1 || got.Items[0].State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("changed pod read back as %v", got.Items)
	}
	runtime.KeepAlive(a2)

	a, b, a2 = nil, nil, nil
	deadline := time.Now().Add(10 * time.Second)
	for c.pods.len() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d encodings of collected items still cached", c.pods.len())
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

// The codec serves a real gRPC server: kubelet's client reads the answers.
func TestListCodecOverGRPC(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	items := []*runtimeapi.Container{full(&runtimeapi.Container{}), full(&runtimeapi.Container{})}
	g := grpc.NewServer(ServerCodec())
	runtimeapi.RegisterRuntimeServiceServer(g, &listOnly{containers: items})
	go g.Serve(lis)
	t.Cleanup(g.Stop)

	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl := runtimeapi.NewRuntimeServiceClient(conn)
	for range 2 {
		resp, err := cl.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(resp, &runtimeapi.ListContainersResponse{Containers: items}) {
			t.Fatalf("got %v", resp)
		}
	}
	v, err := cl.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil || v.RuntimeName != "listOnly" {
		t.Fatalf("Version: %v, %v", v, err)
	}
}

type listOnly struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	containers []*runtimeapi.Container
}

func (l *listOnly) ListContainers(context.Context, *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	return &runtimeapi.ListContainersResponse{Containers: l.containers}, nil
}

func (l *listOnly) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{RuntimeName: "listOnly"}, nil
}

// Recycled answer buffers have the asked length and room to spare for the
// next, slightly larger answer.
func TestBufferPool(t *testing.T) {
	var p bufferPool
	for _, n := range []int{1, 1000, 1024, 1025, 70000} {
		b := p.Get(n)
		if len(*b) != n || cap(*b) < n || cap(*b)&(cap(*b)-1) != 0 {
			t.Errorf("Get(%d): len %d cap %d", n, len(*b), cap(*b))
		}
		p.Put(b)
	}
}

// BenchmarkListAnswer encodes kubelet's relist answer for 100 pods with
// gRPC's protobuf codec and with the list codec.
func BenchmarkListAnswer(b *testing.B) {
	items := make([]*runtimeapi.PodSandbox, 100)
	for i := range items {
		name := fmt.Sprintf("pod-%d", i)
		items[i] = &runtimeapi.PodSandbox{
			Id: fmt.Sprintf("%064d", i), State: runtimeapi.PodSandboxState_SANDBOX_READY, CreatedAt: time.Now().UnixNano(),
			Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "default", Uid: fmt.Sprintf("%032d", i)},
			Labels: map[string]string{"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": "default",
				"io.kubernetes.pod.uid": fmt.Sprintf("%032d", i), "app": "web", "pod-template-hash": "5d9c7b8f6"},
			Annotations: map[string]string{"kubernetes.io/config.source": "api", "kubernetes.io/config.seen": "2026-11-23T00:00:00Z"},
		}
	}
	resp := &runtimeapi.ListPodSandboxResponse{Items: items}
	for _, c := range []encoding.CodecV2{encoding.GetCodecV2("proto"), newListCodec()} {
		b.Run(fmt.Sprintf("%T", c), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				data, err := c.Marshal(resp)
				if err != nil {
					b.Fatal(err)
				}
				data.Free()
			}
		})
	}
}
