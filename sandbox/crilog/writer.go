package crilog

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"
)

// Stream names, as they appear in the second field of an entry.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// Tags, as they appear in the third field of an entry.
const (
	TagFull    = "F"
	TagPartial = "P"
)

// DefaultMaxLineSize is the content size at which a line is split into
// partial entries when no WithMaxLineSize option is given. It is containerd's
// default max_container_log_line_size.
const DefaultMaxLineSize = 16 * 1024

// FileMode is the permission of a log file the Writer creates. It is applied
// with fchmod after creation, so the process umask does not narrow it. An
// existing file keeps its mode.
const FileMode fs.FileMode = 0o640

// ErrClosed is returned (wrapped) by writes, Reopen and Copy's write error
// after Close.
var ErrClosed = errors.New("crilog: writer closed")

const (
	// headerRoom is the space reserved in front of the content in a copier's
	// entry buffer; the header is written right-aligned into it so that the
	// content is copied exactly once. The longest header is
	// "2006-01-02T15:04:05.999999999Z stdout F " (40 bytes); a longer one
	// (a year past 9999) takes a slow path.
	headerRoom = 64
	// defaultReadBufferSize is the bufio.Reader size per stream. Every
	// running container holds two for its whole life, so it stays small: a
	// line longer than it is assembled in the entry buffer anyway.
	defaultReadBufferSize = 8 * 1024
	// shrinkAbove is the entry buffer capacity above which the buffer is
	// dropped after an entry, so that one huge line (no size limit) does not
	// pin its memory for the life of the container.
	shrinkAbove = 1 << 20
	// maxOpenRetries bounds the create-or-open race loop in openFile.
	maxOpenRetries = 5
)

// Option configures a Writer.
type Option func(*options)

type options struct {
	maxLine int
	clock   func() time.Time
	onError func(error)
	readBuf int
}

// WithMaxLineSize sets the content size at which a line is split: every
// entry carries at most n content bytes, a longer line becomes P entries of
// exactly n bytes followed by an F entry with the rest. n <= 0 means no limit
// (containerd: "non-positive value means no limit"); the whole line is then
// buffered in memory and written as one entry.
func WithMaxLineSize(n int) Option {
	return func(o *options) { o.maxLine = n }
}

// WithClock sets the source of entry timestamps (default time.Now). The time
// is converted to UTC before it is formatted.
func WithClock(clock func() time.Time) Option {
	return func(o *options) {
		if clock != nil {
			o.clock = clock
		}
	}
}

// WithErrorHandler sets a function called with the first write error on each
// opened file (Open, and again after each Reopen). It is called from the
// goroutine running Copy, without any Writer lock held, so it may call Reopen
// or Close. Copy also returns its first write error when its reader ends.
func WithErrorHandler(fn func(error)) Option {
	return func(o *options) { o.onError = fn }
}

// withReadBufferSize sets the per-stream read buffer (tests use tiny sizes to
// exercise lines that span buffer refills). bufio enforces a minimum of 16.
func withReadBufferSize(n int) Option {
	return func(o *options) { o.readBuf = n }
}

// Writer is one container's log file. Copy calls for stdout and stderr (one
// goroutine each) write entries to it, and Reopen swaps the file underneath
// them. All methods are safe for concurrent use. A Writer starts no
// goroutines.
type Writer struct {
	path string
	opts options

	mu       sync.Mutex
	f        *os.File // nil after Close
	torn     bool     // the last write to f stopped inside an entry
	reported bool     // onError was called for f
}

// Open opens (creating it if needed, mode FileMode) the log file at path for
// appending. The parent directory must exist: kubelet creates the pod log
// directory, and Open does not create directories on its behalf.
func Open(path string, opts ...Option) (*Writer, error) {
	o := options{maxLine: DefaultMaxLineSize, clock: time.Now, readBuf: defaultReadBufferSize}
	for _, opt := range opts {
		opt(&o)
	}
	f, err := openFile(path)
	if err != nil {
		return nil, fmt.Errorf("open container log %q: %w", path, err)
	}
	return &Writer{path: path, opts: o, f: f}, nil
}

// openFile opens path write-only in append mode, creating it with FileMode
// if it does not exist. Only a file it created is chmod'ed, so an existing
// file (or a device such as /dev/null) keeps its mode.
func openFile(path string) (*os.File, error) {
	var err error
	for range maxOpenRetries {
		var f *os.File
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, FileMode)
		if err == nil {
			if err := f.Chmod(FileMode); err != nil {
				f.Close()
				return nil, err
			}
			return f, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		// Removed between the two opens: try to create it again.
	}
	return nil, err
}

// Path returns the path the Writer opens.
func (w *Writer) Path() string { return w.path }

// Reopen opens the path anew and then closes the old file. Kubelet's log
// rotation renames the file and calls ReopenContainerLog; entries written
// before the swap go to the renamed file, entries after it to the new one.
// Each entry is written with one write under the Writer's lock, so no entry
// is lost or split across the two files. A line that is being split into
// partial entries may have its P entries in the old file and the rest in the
// new one. If the new file cannot be opened, the old one stays in use.
func (w *Writer) Reopen() error {
	nf, err := openFile(w.path)
	if err != nil {
		return fmt.Errorf("reopen container log %q: %w", w.path, err)
	}
	w.mu.Lock()
	old := w.f
	if old == nil {
		w.mu.Unlock()
		nf.Close()
		return fmt.Errorf("reopen container log %q: %w", w.path, ErrClosed)
	}
	w.f, w.torn, w.reported = nf, false, false
	w.mu.Unlock()
	if err := old.Close(); err != nil {
		return fmt.Errorf("close rotated container log %q: %w", w.path, err)
	}
	return nil
}

// Close closes the file. Copy calls still running keep draining their
// readers; their writes fail with ErrClosed. Closing twice returns nil.
func (w *Writer) Close() error {
	w.mu.Lock()
	f := w.f
	w.f = nil
	w.mu.Unlock()
	if f == nil {
		return nil
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close container log %q: %w", w.path, err)
	}
	return nil
}

// write appends one complete entry with one write call. first reports
// whether err is the first error on the current file (so the caller reports
// it to the error handler).
func (w *Writer) write(entry []byte) (first bool, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return false, ErrClosed
	}
	if w.torn {
		// A failed write left a truncated entry at the end of the file.
		// Terminate it, so this entry starts on a line of its own instead of
		// being glued to the torn one.
		if _, err = w.f.Write([]byte{'\n'}); err == nil {
			w.torn = false
		}
	}
	if err == nil {
		var n int
		n, err = w.f.Write(entry)
		if err != nil && n > 0 {
			w.torn = true
		}
	}
	if err != nil && !w.reported {
		w.reported = true
		return true, err
	}
	return false, err
}

// Copy reads r until EOF (or a read error) and writes an entry for every
// line to the log file, tagged with stream (Stdout or Stderr). It returns
// when r is exhausted.
//
// A write failure never stops Copy: it keeps reading, so the container never
// blocks on a full pipe because its log cannot be written. The first write
// error goes to the error handler (see WithErrorHandler) and is returned
// when r ends, joined with a read error other than io.EOF if there was one.
//
// Lines are split at '\n'; a terminating "\r\n" or "\n" is not part of the
// content, any other '\r' is. A line longer than the maximum size becomes P
// entries and a final F entry. Bytes after the last '\n' at EOF are written
// as P entries (there is no F: the line never ended), as containerd does.
func (w *Writer) Copy(stream string, r io.Reader) error {
	if stream != Stdout && stream != Stderr {
		return fmt.Errorf("copy to container log %q: invalid stream %q (want %q or %q)", w.path, stream, Stdout, Stderr)
	}
	c := copier{
		w:      w,
		stream: stream,
		max:    w.opts.maxLine,
		buf:    make([]byte, headerRoom, headerRoom+initialContentCap(w.opts.maxLine)+1),
	}
	br := bufio.NewReaderSize(r, w.opts.readBuf)
	for {
		chunk, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			// A whole line (or the end of one) with its terminator.
			chunk = chunk[:len(chunk)-1]
			if n := len(chunk); n > 0 && chunk[n-1] == '\r' {
				chunk = chunk[:n-1]
			}
			c.add(chunk)
			c.emit(TagFull)
			continue
		case err == bufio.ErrBufferFull:
			// The middle of a long line. Keep a trailing '\r' back: it may
			// be the first half of a "\r\n" terminator. The buffer holds at
			// least 16 bytes, so the chunk stays non-empty.
			if chunk[len(chunk)-1] == '\r' {
				_ = br.UnreadByte() // cannot fail right after ReadSlice
				chunk = chunk[:len(chunk)-1]
			}
			c.add(chunk)
			continue
		}
		// EOF or a read error: the unterminated rest is a partial line.
		c.add(chunk)
		if c.n() > 0 {
			c.emit(TagPartial)
		}
		if err == io.EOF {
			return c.werr
		}
		return errors.Join(fmt.Errorf("read %s of container log %q: %w", stream, w.path, err), c.werr)
	}
}

func initialContentCap(max int) int {
	if max > 0 && max < 512 {
		return max
	}
	return 512 // grows with the first long line
}

// copier is the state of one Copy call: the entry being built and the first
// write error.
type copier struct {
	w      *Writer
	stream string
	max    int
	// buf is [headerRoom reserved bytes][content of the current entry].
	buf  []byte
	werr error
}

// n is the content length of the entry being built.
func (c *copier) n() int { return len(c.buf) - headerRoom }

// add appends content of the current line, emitting a P entry each time the
// entry holds max bytes and more content follows. An entry is only split
// when its line is known to be longer than max, so a line of exactly max
// bytes is a single F entry, as in containerd.
func (c *copier) add(p []byte) {
	if c.max <= 0 {
		c.buf = append(c.buf, p...)
		return
	}
	for len(p) > 0 {
		room := c.max - c.n()
		if room == 0 {
			c.emit(TagPartial)
			room = c.max
		}
		take := min(room, len(p))
		c.buf = append(c.buf, p[:take]...)
		p = p[take:]
	}
}

// emit writes the current entry with tag and starts an empty one.
func (c *copier) emit(tag string) {
	var hb [headerRoom]byte
	h := c.w.opts.clock().UTC().AppendFormat(hb[:0], time.RFC3339Nano)
	h = append(h, ' ')
	h = append(h, c.stream...)
	h = append(h, ' ')
	h = append(h, tag...)
	h = append(h, ' ')
	c.buf = append(c.buf, '\n')
	var entry []byte
	if start := headerRoom - len(h); start >= 0 {
		copy(c.buf[start:], h)
		entry = c.buf[start:]
	} else {
		entry = append(h, c.buf[headerRoom:]...)
	}
	first, err := c.w.write(entry)
	if err != nil {
		err = fmt.Errorf("write %s to container log %q: %w", c.stream, c.w.path, err)
		if c.werr == nil {
			c.werr = err
		}
		if first && c.w.opts.onError != nil {
			c.w.opts.onError(err)
		}
	}
	if cap(c.buf) > shrinkAbove {
		c.buf = make([]byte, headerRoom, headerRoom+initialContentCap(c.max)+1)
		return
	}
	c.buf = c.buf[:headerRoom]
}
