package stdio

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"k8s.io/klog/v2"
)

// Attachment is one client attached to the container's IO: its ends of the
// streams, nil for one it did not ask for. Stderr is ignored with a TTY.
type Attachment struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// ErrDropped is what Attach returns when it detached its client: a write
// to it failed, or it fell more than fanoutMaxLag behind the output. The
// output it missed is only in the log; without this error the client
// could not tell its session from one whose container's output ended.
var ErrDropped = fmt.Errorf("the attached client was detached: it fell more than %d MiB behind the container's output, or a write to it failed; the output it missed is in the container's log", fanoutMaxLag>>20)

// Attach connects a client to the container's output (and its stdin, when
// the container has one) until the output ends, the client goes away
// (a write fails, or it was too slow and got dropped: ErrDropped), the
// client closes its stdin (unless stdin_once: then the container's stdin
// is closed and the session lasts until the output ends), or ctx ends.
func (c *ContainerIO) Attach(ctx context.Context, a Attachment) error {
	var subs []*subscriber
	if a.Stdout != nil {
		subs = append(subs, c.stdoutFan.subscribe(a.Stdout))
	}
	if a.Stderr != nil && !c.tty {
		subs = append(subs, c.stderrFan.subscribe(a.Stderr))
	}
	defer func() {
		for _, s := range subs {
			s.fan.remove(s, false)
		}
	}()

	var detached chan struct{} // closed when the client's stdin ends and that ends the session
	if a.Stdin != nil {
		if w := c.claimStdin(); w != nil {
			detached = make(chan struct{})
			go func() {
				_, err := io.Copy(w, a.Stdin)
				klog.V(4).InfoS("Attached stdin ended", "dir", c.dir, "err", err)
				if c.stdinOnce {
					c.closeStdin()
					return
				}
				close(detached)
			}()
		} else {
			// Nothing reads it, but an unread stream can stall the
			// client's connection: drain it (it ends with the connection).
			go func() { _, _ = io.Copy(io.Discard, a.Stdin) }()
		}
	}

	// A subscriber ends when its output ended and was written (done), or
	// when it was removed (stop): dropped, or by this attach returning.
	// A dropped one may still be stuck in a Write to a client that does
	// not read; that Write fails once the client's connection is closed.
	ended := make(chan *subscriber, len(subs))
	for _, s := range subs {
		go func() {
			select {
			case <-s.done:
			case <-s.stop:
			case <-ctx.Done():
				return
			}
			ended <- s
		}()
	}
	outputDone := c.done
	if len(subs) > 0 {
		outputDone = nil // the subscribers report the end of the output
	}
	for open := len(subs); open > 0 || len(subs) == 0; {
		select {
		case s := <-ended:
			if s.dropped.Load() {
				return ErrDropped // the client is gone or too slow
			}
			open--
			if open == 0 {
				return nil
			}
		case <-outputDone:
			return nil
		case <-detached:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

// An attached client may lag behind the output by fanoutMaxLag bytes (in
// at most fanoutQueue chunks) before it is dropped.
const (
	fanoutMaxLag = 4 << 20
	fanoutQueue  = 1024
)

// fanout copies one output stream of a container to any number of attached
// writers. Write never blocks and never fails: each writer has a bounded
// queue and a goroutine of its own, and a writer whose queue is full or whose
// Write failed is removed, so neither the container nor its log ever waits
// for a client.
type fanout struct {
	name   string
	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool
}

// subscriber is one attached writer of a fanout.
type subscriber struct {
	fan     *fanout
	w       io.Writer
	queue   chan []byte
	stop    chan struct{} // closed when removed: stop writing
	done    chan struct{} // closed when the writer goroutine has returned
	dropped atomic.Bool   // removed because it failed or lagged, not by its owner
	lag     atomic.Int64  // bytes queued and not written yet
}

func newFanout(name string) *fanout {
	return &fanout{name: name, subs: map[*subscriber]struct{}{}}
}

// subscribe adds w. Its done channel closes once the stream has ended and
// everything queued was written, or when it is removed. Subscribing to an
// ended stream returns a subscriber that is already done.
func (f *fanout) subscribe(w io.Writer) *subscriber {
	s := &subscriber{fan: f, w: w, queue: make(chan []byte, fanoutQueue), stop: make(chan struct{}), done: make(chan struct{})}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		close(s.done)
		return s
	}
	f.subs[s] = struct{}{}
	go s.run()
	return s
}

func (s *subscriber) run() {
	defer close(s.done)
	for {
		select {
		case <-s.stop:
			return
		case b, ok := <-s.queue:
			if !ok {
				return
			}
			_, err := s.w.Write(b)
			s.lag.Add(-int64(len(b)))
			if err != nil {
				klog.V(4).InfoS("Attached client went away", "stream", s.fan.name, "err", err)
				s.fan.remove(s, true)
				return
			}
		}
	}
}

// Write hands a copy of p to every subscriber.
func (f *fanout) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.subs) == 0 {
		return len(p), nil
	}
	b := bytes.Clone(p)
	for s := range f.subs {
		if s.lag.Add(int64(len(b))) > fanoutMaxLag {
			klog.InfoS("Dropping an attached client that does not keep up with the output", "stream", f.name, "lag", s.lag.Load())
			f.removeLocked(s, true)
			continue
		}
		select {
		case s.queue <- b:
		default:
			klog.InfoS("Dropping an attached client that does not keep up with the output", "stream", f.name)
			f.removeLocked(s, true)
		}
	}
	return len(p), nil
}

// remove detaches s; dropped says it failed rather than left.
func (f *fanout) remove(s *subscriber, dropped bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removeLocked(s, dropped)
}

func (f *fanout) removeLocked(s *subscriber, dropped bool) {
	if _, ok := f.subs[s]; !ok {
		return
	}
	delete(f.subs, s)
	s.dropped.Store(dropped)
	close(s.stop)
}

// close ends the stream: subscribers write what they have queued, then end.
func (f *fanout) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	f.closed = true
	for s := range f.subs {
		delete(f.subs, s)
		close(s.queue)
	}
}
