package crilog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
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
	// defaultReadBufferSize is Copy's read size. A line longer than it is
	// assembled in the entry buffer anyway.
	defaultReadBufferSize = 8 * 1024
	// maxPooledEntry is the largest entry buffer kept for reuse between
	// lines (a default maximum line with its header fits).
	maxPooledEntry = 64 << 10
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

// withReadBufferSize sets Copy's read size (tests use tiny sizes to exercise
// lines that span reads).
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

// DirMode is the mode of log directories Open creates.
const DirMode = 0o755

// Open opens (creating it if needed, mode FileMode) the log file at path for
// appending, and creates its missing parent directories (DirMode). kubelet
// makes the pod's log directory before it starts a container, but other CRI
// clients (crictl with a log_directory it did not create, critest) need not:
// containerd's CRI (openLogFile) and CRI-O create it too, so a missing
// directory never fails StartContainer.
func Open(path string, opts ...Option) (*Writer, error) {
	o := options{maxLine: DefaultMaxLineSize, clock: time.Now, readBuf: defaultReadBufferSize}
	for _, opt := range opts {
		opt(&o)
	}
	if err := os.MkdirAll(filepath.Dir(path), DirMode); err != nil {
		return nil, fmt.Errorf("open container log %q: %w", path, err)
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
// when r is exhausted. It is Stream with a read loop: the entries are the
// same for the same bytes, however r splits them.
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
	s, err := w.Stream(stream)
	if err != nil {
		return err
	}
	buf := make([]byte, max(w.opts.readBuf, 1))
	for {
		n, err := r.Read(buf)
		_, _ = s.Write(buf[:n]) // never fails: write errors are kept for Close
		if err == nil {
			continue
		}
		werr := s.Close()
		if err == io.EOF {
			return werr
		}
		return errors.Join(fmt.Errorf("read %s of container log %q: %w", stream, w.path, err), werr)
	}
}

// Stream returns the writer of one stream's entries (Stdout or Stderr): the
// output written to it, in chunks of any size, becomes entries exactly as
// Copy makes them, and Close ends the output (an unterminated rest becomes P
// entries). It is for callers that read the output themselves, so that no
// read buffer is held while the output is idle.
//
// Write never fails and never blocks on the chunk's consumer: a write error
// goes to the error handler and is returned by Close. A StreamWriter holds
// its entry buffer only while a line is unfinished: between lines it holds
// no memory but itself. One goroutine writes a StreamWriter; the two
// streams of a Writer may be written concurrently.
func (w *Writer) Stream(stream string) (*StreamWriter, error) {
	if stream != Stdout && stream != Stderr {
		return nil, fmt.Errorf("copy to container log %q: invalid stream %q (want %q or %q)", w.path, stream, Stdout, Stderr)
	}
	return &StreamWriter{w: w, stream: stream, max: w.opts.maxLine}, nil
}

// StreamWriter builds the entries of one stream; see Writer.Stream.
type StreamWriter struct {
	w      *Writer
	stream string
	max    int
	// buf is [headerRoom reserved bytes][content of the current entry],
	// nil while no line is unfinished (it goes back to entryBufs).
	buf *[]byte
	// cr: the last chunk ended in a '\r' that is not in buf yet: content,
	// or the first half of a "\r\n" terminator split across two chunks.
	cr   bool
	werr error
}

// entryBufs holds the entry buffers of streams between lines.
var entryBufs = sync.Pool{New: func() any {
	b := make([]byte, headerRoom, headerRoom+initialContentCap(DefaultMaxLineSize)+1)
	return &b
}}

// Write turns p into entries: every line p ends is written, the start of an
// unfinished line is kept (cut into P entries once it exceeds the maximum).
// It always returns len(p), nil.
func (s *StreamWriter) Write(p []byte) (int, error) {
	n := len(p)
	if s.cr && len(p) > 0 {
		s.cr = false
		if p[0] == '\n' {
			s.emit(TagFull) // the held '\r' was half of the terminator
			p = p[1:]
		} else {
			s.add([]byte{'\r'})
		}
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			// The middle of a line. Keep a trailing '\r' back: it may be
			// the first half of a "\r\n" terminator.
			if p[len(p)-1] == '\r' {
				s.cr = true
				p = p[:len(p)-1]
			}
			s.add(p)
			break
		}
		line := p[:i]
		if k := len(line); k > 0 && line[k-1] == '\r' {
			line = line[:k-1]
		}
		s.add(line)
		s.emit(TagFull)
		p = p[i+1:]
	}
	s.release()
	return n, nil
}

// Close ends the stream: the unterminated rest of the output (a held '\r'
// included: it is content) is written as P entries. It returns the first
// write error of the stream. Writing after Close starts a new line.
func (s *StreamWriter) Close() error {
	if s.cr {
		s.cr = false
		s.add([]byte{'\r'})
	}
	if s.n() > 0 {
		s.emit(TagPartial)
	}
	s.release()
	return s.werr
}

func initialContentCap(max int) int {
	if max > 0 && max < 512 {
		return max
	}
	return 512 // grows with the first long line
}

// n is the content length of the entry being built.
func (s *StreamWriter) n() int {
	if s.buf == nil {
		return 0
	}
	return len(*s.buf) - headerRoom
}

// grab makes sure an entry buffer is held.
func (s *StreamWriter) grab() {
	if s.buf == nil {
		s.buf = entryBufs.Get().(*[]byte)
		*s.buf = (*s.buf)[:headerRoom]
	}
}

// release gives the entry buffer back while no line is unfinished, unless
// one huge line grew it: that is left to the garbage collector.
func (s *StreamWriter) release() {
	if s.buf == nil || s.n() > 0 || s.cr {
		return
	}
	if cap(*s.buf) <= maxPooledEntry {
		entryBufs.Put(s.buf)
	}
	s.buf = nil
}

// add appends content of the current line, emitting a P entry each time the
// entry holds max bytes and more content follows. An entry is only split
// when its line is known to be longer than max, so a line of exactly max
// bytes is a single F entry, as in containerd.
func (s *StreamWriter) add(p []byte) {
	s.grab()
	if s.max <= 0 {
		*s.buf = append(*s.buf, p...)
		return
	}
	for len(p) > 0 {
		room := s.max - s.n()
		if room == 0 {
			s.emit(TagPartial)
			room = s.max
		}
		take := min(room, len(p))
		*s.buf = append(*s.buf, p[:take]...)
		p = p[take:]
	}
}

// emit writes the current entry with tag and starts an empty one.
func (s *StreamWriter) emit(tag string) {
	s.grab()
	var hb [headerRoom]byte
	h := s.w.opts.clock().UTC().AppendFormat(hb[:0], time.RFC3339Nano)
	h = append(h, ' ')
	h = append(h, s.stream...)
	h = append(h, ' ')
	h = append(h, tag...)
	h = append(h, ' ')
	buf := append(*s.buf, '\n')
	var entry []byte
	if start := headerRoom - len(h); start >= 0 {
		copy(buf[start:], h)
		entry = buf[start:]
	} else {
		entry = append(h, buf[headerRoom:]...)
	}
	first, err := s.w.write(entry)
	if err != nil {
		err = fmt.Errorf("write %s to container log %q: %w", s.stream, s.w.path, err)
		if s.werr == nil {
			s.werr = err
		}
		if first && s.w.opts.onError != nil {
			s.w.opts.onError(err)
		}
	}
	if cap(buf) > shrinkAbove {
		b := make([]byte, headerRoom, headerRoom+initialContentCap(s.max)+1)
		s.buf = &b
		return
	}
	*s.buf = buf[:headerRoom]
}
