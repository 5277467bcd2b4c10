package images

import (
	"context"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// progressWatch cancels a pull whose registry traffic stalls: while at least
// one request is open (sent and not yet answered, or a response body not yet
// read to the end or closed), some byte must arrive every timeout. Time with
// no request open (resolving locally, unpacking the last layer) does not
// count. It is fed by progressTransport, installed on every HTTP client of the
// pull through config.HostOptions.UpdateClient, so the cost on the data path is
// two atomic operations per read.
type progressWatch struct {
	timeout time.Duration
	cancel  context.CancelCauseFunc

	active atomic.Int64 // open requests and response bodies
	last   atomic.Int64 // UnixNano of the last byte, request start or response
	now    func() time.Time
}

// newProgressWatch returns nil when timeout is 0 (disabled); a nil watch
// does nothing.
func newProgressWatch(timeout time.Duration, cancel context.CancelCauseFunc) *progressWatch {
	if timeout <= 0 {
		return nil
	}
	w := &progressWatch{timeout: timeout, cancel: cancel, now: time.Now}
	w.touch()
	return w
}

func (w *progressWatch) touch() { w.last.Store(w.now().UnixNano()) }

// start runs the watchdog until ctx ends or stop is called; stop returns only
// after the watchdog goroutine has exited.
func (w *progressWatch) start(ctx context.Context) (stop func()) {
	if w == nil {
		return func() {}
	}
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		timer := time.NewTimer(w.timeout)
		defer timer.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-quit:
				return
			case <-timer.C:
			}
			idle := w.now().Sub(time.Unix(0, w.last.Load()))
			if w.active.Load() > 0 && idle >= w.timeout {
				w.cancel(&stalledError{timeout: w.timeout})
				return
			}
			next := w.timeout - idle
			if w.active.Load() == 0 || next <= 0 {
				// Nothing open: a request that starts now touches the
				// clock, so checking one timeout later is early enough.
				next = w.timeout
			}
			timer.Reset(next)
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(quit) })
		<-done
	}
}

// updateClient installs the counting transport on a registry HTTP client.
// containerd may call it twice on copies of one client; it wraps once.
func (w *progressWatch) updateClient(c *http.Client) error {
	if w == nil {
		return nil
	}
	next := c.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	if pt, ok := next.(*progressTransport); ok && pt.w == w {
		return nil
	}
	c.Transport = &progressTransport{w: w, next: next}
	return nil
}

type progressTransport struct {
	w    *progressWatch
	next http.RoundTripper
}

func (t *progressTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.w.active.Add(1)
	t.w.touch()
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		t.w.active.Add(-1)
		return nil, err
	}
	t.w.touch()
	resp.Body = &progressBody{rc: resp.Body, w: t.w}
	return resp, nil
}

// CloseIdleConnections passes through, so http.Client.CloseIdleConnections
// reaches the real transport.
func (t *progressTransport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// progressBody counts a response body as open until it is read to the end
// or closed, and touches the clock on every byte read.
type progressBody struct {
	rc   io.ReadCloser
	w    *progressWatch
	once sync.Once
}

func (b *progressBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.w.touch()
	}
	if err != nil {
		b.release()
	}
	return n, err
}

func (b *progressBody) Close() error {
	err := b.rc.Close()
	b.release()
	return err
}

func (b *progressBody) release() { b.once.Do(func() { b.w.active.Add(-1) }) }
