package cri

import (
	"fmt"
	"math/bits"
	"runtime"
	"sync"
	"weak"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the fallback codec
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Kubelet polls the four List calls every second or so, and their answers
// are mostly the same pods and containers each time. Encoding them is
// most of a List call's work (protobuf walks each item's label and
// annotation maps by reflection), so the codec encodes each item once and
// reuses the bytes for as long as the item lives. ListPodSandboxMetrics
// (each /metrics/cadvisor scrape) is treated the same: a pod's entry holds
// some sixty metrics per container and changes once per stats sample.
//
// That relies on the runtime's list items being immutable once returned:
// sandbox hands out one item per pod, container and stats sample, and makes
// a new one when anything in it changes. An item's bytes are forgotten when
// the item is collected.

// ServerCodec is the gRPC server option that installs the codec: protobuf,
// with the items of List and Stream answers encoded once per item.
func ServerCodec() grpc.ServerOption { return grpc.ForceServerCodecV2(newListCodec()) }

// listCodec is gRPC's protobuf codec with per-item caches for the answers
// of the List and Stream calls.
type listCodec struct {
	proto      encoding.CodecV2
	pods       itemCache[runtimeapi.PodSandbox]
	containers itemCache[runtimeapi.Container]
	ctrStats   itemCache[runtimeapi.ContainerStats]
	podStats   itemCache[runtimeapi.PodSandboxStats]
	podMetrics itemCache[runtimeapi.PodSandboxMetrics]
}

func newListCodec() *listCodec { return &listCodec{proto: encoding.GetCodecV2("proto")} }

// Name is the codec's content subtype: it speaks plain protobuf.
func (c *listCodec) Name() string { return "proto" }

// Unmarshal is protobuf's.
func (c *listCodec) Unmarshal(data mem.BufferSlice, v any) error { return c.proto.Unmarshal(data, v) }

// Marshal encodes the list answers from cached items (each is a message
// with one field, the repeated items, number 1: TestListCodecAnswers holds
// cri-api to that) and everything else as protobuf does.
func (c *listCodec) Marshal(v any) (mem.BufferSlice, error) {
	switch m := v.(type) {
	case *runtimeapi.ListPodSandboxResponse:
		return appendItems(&c.pods, m.GetItems())
	case *runtimeapi.StreamPodSandboxesResponse:
		return appendItems(&c.pods, m.GetPodSandboxes())
	case *runtimeapi.ListContainersResponse:
		return appendItems(&c.containers, m.GetContainers())
	case *runtimeapi.StreamContainersResponse:
		return appendItems(&c.containers, m.GetContainers())
	case *runtimeapi.ListContainerStatsResponse:
		return appendItems(&c.ctrStats, m.GetStats())
	case *runtimeapi.StreamContainerStatsResponse:
		return appendItems(&c.ctrStats, m.GetContainerStats())
	case *runtimeapi.ListPodSandboxStatsResponse:
		return appendItems(&c.podStats, m.GetStats())
	case *runtimeapi.StreamPodSandboxStatsResponse:
		return appendItems(&c.podStats, m.GetPodSandboxStats())
	case *runtimeapi.ListPodSandboxMetricsResponse:
		return appendItems(&c.podMetrics, m.GetPodMetrics())
	case *runtimeapi.StreamPodSandboxMetricsResponse:
		return appendItems(&c.podMetrics, m.GetPodSandboxMetrics())
	}
	return c.proto.Marshal(v)
}

// listField is the field number of the items in every list answer.
const listField protowire.Number = 1

// appendItems encodes items as the repeated field 1 of a message, into a
// buffer from answerBuffers (gRPC returns it once the answer is written).
func appendItems[T any, P interface {
	*T
	proto.Message
}](c *itemCache[T], items []P) (mem.BufferSlice, error) {
	encs := make([][]byte, len(items))
	size := 0
	for i, it := range items {
		if it == nil {
			return nil, fmt.Errorf("proto: list item %d is nil", i)
		}
		enc, err := c.get((*T)(it), func() ([]byte, error) { return proto.Marshal(it) })
		if err != nil {
			return nil, err
		}
		encs[i] = enc
		size += protowire.SizeTag(listField) + protowire.SizeBytes(len(enc))
	}
	if mem.IsBelowBufferPoolingThreshold(size) {
		return mem.BufferSlice{mem.SliceBuffer(appendEncoded(make([]byte, 0, size), encs))}, nil
	}
	buf := answerBuffers.Get(size)
	*buf = appendEncoded((*buf)[:0], encs)
	return mem.BufferSlice{mem.NewBuffer(buf, answerBuffers)}, nil
}

// answerBuffers recycles the buffers of list answers. Unlike gRPC's pool
// it does not clear them: appendEncoded overwrites every byte handed out.
var answerBuffers = &bufferPool{}

type bufferPool struct{ p sync.Pool }

// Get returns a buffer of length n. Capacities are powers of two, so one
// buffer serves answers of similar size.
func (b *bufferPool) Get(n int) *[]byte {
	if buf, _ := b.p.Get().(*[]byte); buf != nil && cap(*buf) >= n {
		*buf = (*buf)[:n]
		return buf
	}
	buf := make([]byte, n, 1<<bits.Len(uint(n-1)))
	return &buf
}

func (b *bufferPool) Put(buf *[]byte) { b.p.Put(buf) }

func appendEncoded(b []byte, encs [][]byte) []byte {
	for _, enc := range encs {
		b = protowire.AppendTag(b, listField, protowire.BytesType)
		b = protowire.AppendBytes(b, enc)
	}
	return b
}

// itemCache maps live items to their encoding. Keys are weak: the cache
// never keeps an item alive, and a cleanup removes the entry once the item
// is collected. The zero value is an empty cache.
type itemCache[T any] struct {
	mu  sync.Mutex
	enc map[weak.Pointer[T]][]byte
}

// get returns p's cached encoding, encoding it with encode on first use.
func (c *itemCache[T]) get(p *T, encode func() ([]byte, error)) ([]byte, error) {
	key := weak.Make(p)
	c.mu.Lock()
	b, ok := c.enc[key]
	c.mu.Unlock()
	if ok {
		return b, nil
	}
	b, err := encode()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cached, ok := c.enc[key]; ok {
		return cached, nil
	}
	if c.enc == nil {
		c.enc = map[weak.Pointer[T]][]byte{}
	}
	c.enc[key] = b
	runtime.AddCleanup(p, c.forget, key)
	return b, nil
}

func (c *itemCache[T]) forget(key weak.Pointer[T]) {
	c.mu.Lock()
	delete(c.enc, key)
	c.mu.Unlock()
}

// len is the number of cached items (for tests).
func (c *itemCache[T]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.enc)
}
