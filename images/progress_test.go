package images

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// fakeTransport answers every request with body, or blocks until the
// request's context ends when hang is set.
type fakeTransport struct {
	hang bool
	body func(ctx context.Context) io.ReadCloser
}

func (f *fakeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if f.hang {
		<-req.Context().Done()
		return nil, req.Context().Err()
	}
	return &http.Response{StatusCode: 200, Body: f.body(req.Context()), Request: req}, nil
}

// dripBody yields one byte per interval for n bytes, then blocks until ctx
// ends (stall) or returns EOF.
type dripBody struct {
	ctx      context.Context
	interval time.Duration
	n        int
	stall    bool
}

func (b *dripBody) Read(p []byte) (int, error) {
	if b.n == 0 {
		if !b.stall {
			return 0, io.EOF
		}
		<-b.ctx.Done()
		return 0, b.ctx.Err()
	}
	select {
	case <-time.After(b.interval):
	case <-b.ctx.Done():
		return 0, b.ctx.Err()
	}
	b.n--
	p[0] = 'x'
	return 1, nil
}

func (b *dripBody) Close() error { return nil }

func watchedClient(t *testing.T, timeout time.Duration, rt http.RoundTripper) (context.Context, *http.Client, func()) {
	t.Helper()
	ctx, cancel := context.WithCancelCause(context.Background())
	t.Cleanup(func() { cancel(nil) })
	w := newProgressWatch(timeout, cancel)
	c := &http.Client{Transport: rt}
	if err := w.updateClient(c); err != nil {
		t.Fatal(err)
	}
	if err := w.updateClient(c); err != nil { // containerd may call it twice
		t.Fatal(err)
	}
	if pt, ok := c.Transport.(*progressTransport); !ok || pt.next != rt {
		t.Fatalf("transport wrapped %T, want one progressTransport over the original", c.Transport)
	}
	stop := w.start(ctx)
	return ctx, c, stop
}

func get(ctx context.Context, c *http.Client) (*http.Response, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://registry.test/v2/x/blobs/y", nil)
	return c.Do(req)
}

func TestProgressWatchCancelsStalledBody(t *testing.T) {
	const timeout = 300 * time.Millisecond
	rt := &fakeTransport{body: func(ctx context.Context) io.ReadCloser {
		return &dripBody{ctx: ctx, interval: 10 * time.Millisecond, n: 5, stall: true}
	}}
	ctx, c, stop := watchedClient(t, timeout, rt)
	start := time.Now()
	resp, err := get(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	elapsed := time.Since(start)
	stop()
	var stalled *stalledError
	if !errors.As(context.Cause(ctx), &stalled) {
		t.Fatalf("cause = %v (read err %v), want stalledError", context.Cause(ctx), err)
	}
	if stalled.timeout != timeout {
		t.Errorf("stalled.timeout = %s", stalled.timeout)
	}
	if elapsed < timeout || elapsed > timeout+time.Second {
		t.Errorf("cancelled after %s, want about %s after the last byte", elapsed, timeout)
	}
}

func TestProgressWatchCancelsHungRequest(t *testing.T) {
	const timeout = 200 * time.Millisecond
	ctx, c, stop := watchedClient(t, timeout, &fakeTransport{hang: true})
	defer stop()
	start := time.Now()
	_, err := get(ctx, c)
	if err == nil {
		t.Fatal("request succeeded")
	}
	var stalled *stalledError
	if !errors.As(context.Cause(ctx), &stalled) {
		t.Fatalf("cause = %v, want stalledError", context.Cause(ctx))
	}
	if elapsed := time.Since(start); elapsed > timeout+time.Second {
		t.Errorf("took %s", elapsed)
	}
}

func TestProgressWatchKeepsSlowButMovingPull(t *testing.T) {
	const timeout = 500 * time.Millisecond
	rt := &fakeTransport{body: func(ctx context.Context) io.ReadCloser {
		// 10 bytes, one every 100ms: slow, never silent for the timeout.
		return &dripBody{ctx: ctx, interval: 100 * time.Millisecond, n: 10}
	}}
	ctx, c, stop := watchedClient(t, timeout, rt)
	resp, err := get(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil || len(b) != 10 {
		t.Fatalf("read %d bytes: %v", len(b), err)
	}
	resp.Body.Close()
	// No request open (say, unpacking): idle time does not count.
	select {
	case <-ctx.Done():
		t.Fatalf("cancelled while idle: %v", context.Cause(ctx))
	case <-time.After(3 * timeout):
	}
	done := make(chan struct{})
	go func() { stop(); stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("stop did not return: watchdog goroutine still running")
	}
	if ctx.Err() != nil {
		t.Errorf("cancelled: %v", context.Cause(ctx))
	}
}

func TestProgressWatchDisabled(t *testing.T) {
	w := newProgressWatch(0, func(error) { t.Error("cancel called") })
	if w != nil {
		t.Fatalf("watch for timeout 0 = %v, want nil", w)
	}
	c := &http.Client{}
	if err := w.updateClient(c); err != nil || c.Transport != nil {
		t.Errorf("disabled watch changed the client: %v %T", err, c.Transport)
	}
	w.start(context.Background())() // no goroutine, stop returns at once
}

func TestProgressBodyReleasesOnce(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	w := newProgressWatch(time.Hour, cancel)
	rt := &fakeTransport{body: func(context.Context) io.ReadCloser { return io.NopCloser(strings.NewReader("abc")) }}
	c := &http.Client{Transport: rt}
	_ = w.updateClient(c)
	resp, err := get(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if got := w.active.Load(); got != 1 {
		t.Errorf("active during body = %d, want 1", got)
	}
	_, _ = io.ReadAll(resp.Body) // EOF releases
	resp.Body.Close()            // and close does not release twice
	resp.Body.Close()
	if got := w.active.Load(); got != 0 {
		t.Errorf("active after body = %d, want 0", got)
	}
}
