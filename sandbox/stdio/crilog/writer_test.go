package crilog

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/iotest"
	"time"
)

// testTime is the fixed clock of most tests; testTS is how it is written.
var testTime = time.Date(2016, 10, 6, 0, 17, 9, 669794202, time.UTC)

const testTS = "2016-10-06T00:17:09.669794202Z"

// testTSPattern matches any timestamp Writer writes.
const testTSPattern = `\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z`

func fixedClock() time.Time { return testTime }

// entry renders one expected entry with the fixed timestamp.
func entry(stream, tag, content string) string {
	return testTS + " " + stream + " " + tag + " " + content + "\n"
}

func logPath(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "0.log")
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// splitEntries is the expected output for one terminated line of content
// split at max the way containerd splits it.
func splitEntries(stream, content string, max int) string {
	var b strings.Builder
	for max > 0 && len(content) > max {
		b.WriteString(entry(stream, "P", content[:max]))
		content = content[max:]
	}
	b.WriteString(entry(stream, "F", content))
	return b.String()
}

func TestCopyExactOutput(t *testing.T) {
	long := strings.Repeat("0123456789abcdef", 100*1024/16) // 100 KiB
	tests := []struct {
		desc   string
		max    int
		stream string
		input  string
		want   string
	}{
		{desc: "short line", input: "hello\n", want: entry("stdout", "F", "hello")},
		{desc: "stderr", stream: Stderr, input: "oops\n", want: entry("stderr", "F", "oops")},
		{desc: "empty input", input: "", want: ""},
		{desc: "empty line", input: "\n", want: entry("stdout", "F", "")},
		{desc: "lines with an empty one", input: "a\n\nb c  d\n",
			want: entry("stdout", "F", "a") + entry("stdout", "F", "") + entry("stdout", "F", "b c  d")},
		{desc: "line exactly max", max: 8, input: "12345678\n", want: entry("stdout", "F", "12345678")},
		{desc: "line max+1", max: 8, input: "123456789\n",
			want: entry("stdout", "P", "12345678") + entry("stdout", "F", "9")},
		{desc: "line 2*max", max: 8, input: "1234567812345678\n",
			want: entry("stdout", "P", "12345678") + entry("stdout", "F", "12345678")},
		{desc: "max 1", max: 1, input: "abc\n\n",
			want: entry("stdout", "P", "a") + entry("stdout", "P", "b") + entry("stdout", "F", "c") + entry("stdout", "F", "")},
		{desc: "100 KiB line, max 16 KiB", max: 16 * 1024, input: long + "\n", want: splitEntries("stdout", long, 16*1024)},
		{desc: "100 KiB line, default max", input: long + "\n", want: splitEntries("stdout", long, DefaultMaxLineSize)},
		{desc: "100 KiB line, no limit (negative)", max: -1, input: long + "\nx\n",
			want: entry("stdout", "F", long) + entry("stdout", "F", "x")},
		{desc: "no trailing newline", input: "a\nabc", want: entry("stdout", "F", "a") + entry("stdout", "P", "abc")},
		{desc: "no trailing newline, longer than max", max: 4, input: "abcdefghij",
			want: entry("stdout", "P", "abcd") + entry("stdout", "P", "efgh") + entry("stdout", "P", "ij")},
		{desc: "no trailing newline, exactly max", max: 4, input: "abcd", want: entry("stdout", "P", "abcd")},
		{desc: "CRLF", input: "a\r\nb\r\n\r\n",
			want: entry("stdout", "F", "a") + entry("stdout", "F", "b") + entry("stdout", "F", "")},
		{desc: "CRLF straddling read buffer refills", input: strings.Repeat("x", 15) + "\r\n" + strings.Repeat("y", 16) + "\r\n" + strings.Repeat("z", 31) + "\r\n",
			want: entry("stdout", "F", strings.Repeat("x", 15)) + entry("stdout", "F", strings.Repeat("y", 16)) + entry("stdout", "F", strings.Repeat("z", 31))},
		{desc: "CR inside a line is content", input: "a\rb\n", want: entry("stdout", "F", "a\rb")},
		{desc: "only the last CR of CRCRLF is dropped", input: "a\r\r\n", want: entry("stdout", "F", "a\r")},
		{desc: "CR before EOF is content", input: "a\r", want: entry("stdout", "P", "a\r")},
		{desc: "CRLF right after max bytes", max: 8, input: "12345678\r\n", want: entry("stdout", "F", "12345678")},
		{desc: "CR after max bytes not followed by LF", max: 8, input: "12345678\rx\n",
			want: entry("stdout", "P", "12345678") + entry("stdout", "F", "\rx")},
		{desc: "bytes are not interpreted", input: "\x00\xff\t \x1b[31mred\n", want: entry("stdout", "F", "\x00\xff\t \x1b[31mred")},
	}
	// The output must not depend on how the input arrives.
	readers := []struct {
		name    string
		wrap    func(io.Reader) io.Reader
		readBuf int
	}{
		{name: "plain", wrap: func(r io.Reader) io.Reader { return r }},
		{name: "one-byte reads", wrap: iotest.OneByteReader},
		{name: "half reads", wrap: iotest.HalfReader},
		{name: "data with EOF", wrap: iotest.DataErrReader},
		{name: "16-byte read buffer", wrap: func(r io.Reader) io.Reader { return r }, readBuf: 16},
		{name: "17-byte read buffer, one-byte reads", wrap: iotest.OneByteReader, readBuf: 17},
	}
	for _, tt := range tests {
		for _, rd := range readers {
			t.Run(tt.desc+"/"+rd.name, func(t *testing.T) {
				opts := []Option{WithClock(fixedClock)}
				if tt.max != 0 {
					opts = append(opts, WithMaxLineSize(tt.max))
				}
				if rd.readBuf != 0 {
					opts = append(opts, withReadBufferSize(rd.readBuf))
				}
				stream := tt.stream
				if stream == "" {
					stream = Stdout
				}
				path := logPath(t)
				w, err := Open(path, opts...)
				if err != nil {
					t.Fatal(err)
				}
				if err := w.Copy(stream, rd.wrap(strings.NewReader(tt.input))); err != nil {
					t.Fatalf("Copy: %v", err)
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				if got := readFile(t, path); got != tt.want {
					t.Errorf("file content mismatch\n got: %s\nwant: %s", abbrev(got), abbrev(tt.want))
				}
			})
		}
	}
}

// abbrev quotes s, shortening runs of the same byte so that mismatches in
// long lines stay readable.
func abbrev(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && s[j] == s[i] {
			j++
		}
		if j-i > 8 {
			fmt.Fprintf(&b, "%q×%d", s[i], j-i)
		} else {
			b.WriteString(strings.Trim(fmt.Sprintf("%q", s[i:j]), `"`))
		}
		i = j
	}
	return b.String()
}

func TestTimestamp(t *testing.T) {
	plus2 := time.FixedZone("CEST", 2*60*60)
	tests := []struct {
		desc  string
		clock time.Time
		want  string
	}{
		{desc: "nanoseconds", clock: testTime, want: "2016-10-06T00:17:09.669794202Z"},
		{desc: "trailing zeros dropped, not padded", clock: time.Date(2016, 10, 6, 0, 17, 9, 500000000, time.UTC), want: "2016-10-06T00:17:09.5Z"},
		{desc: "whole second has no fraction", clock: time.Date(2016, 10, 6, 0, 17, 9, 0, time.UTC), want: "2016-10-06T00:17:09Z"},
		{desc: "other zone written as UTC", clock: time.Date(2016, 10, 6, 2, 17, 9, 1, plus2), want: "2016-10-06T00:17:09.000000001Z"},
		{desc: "year past 9999 (slow header path)", clock: time.Date(12016, 10, 6, 0, 17, 9, 1, time.UTC), want: "12016-10-06T00:17:09.000000001Z"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			path := logPath(t)
			w, err := Open(path, WithClock(func() time.Time { return tt.clock }))
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Copy(Stdout, strings.NewReader("x\n")); err != nil {
				t.Fatal(err)
			}
			w.Close()
			got := readFile(t, path)
			if want := tt.want + " stdout F x\n"; got != want {
				t.Fatalf("got %q, want %q", got, want)
			}
			if tt.clock.Year() > 9999 {
				return // RFC3339 parsing only takes 4-digit years
			}
			err = Parse(strings.NewReader(got), func(e Entry) error {
				if !e.Time.Equal(tt.clock) {
					t.Errorf("parsed time %v, want %v", e.Time, tt.clock)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestCopyInvalidStream(t *testing.T) {
	w, err := Open(logPath(t))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, s := range []string{"", "STDOUT", "stdin", "std out"} {
		if err := w.Copy(s, strings.NewReader("x\n")); err == nil {
			t.Errorf("Copy(%q): no error", s)
		}
	}
}

// readEntries parses the files in order and joins partial entries per
// stream; it returns the lines of each stream. An unfinished line (P entries
// without F) at the end of a stream is returned with a "<unterminated>"
// suffix.
func readEntries(t testing.TB, paths ...string) map[string][]string {
	t.Helper()
	lines := map[string][]string{}
	pending := map[string][]byte{}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		err = Parse(f, func(e Entry) error {
			pending[e.Stream] = append(pending[e.Stream], e.Content...)
			if !e.Partial {
				lines[e.Stream] = append(lines[e.Stream], string(pending[e.Stream]))
				pending[e.Stream] = pending[e.Stream][:0]
			}
			return nil
		})
		f.Close()
		if err != nil {
			t.Fatalf("parse %s: %v", p, err)
		}
	}
	for s, rest := range pending {
		if len(rest) > 0 {
			lines[s] = append(lines[s], string(rest)+"<unterminated>")
		}
	}
	return lines
}

// streamLine is line i of a stream in the concurrency tests: the stream's
// own letter repeated (so that mixing two entries shows), with a length
// that varies from 0 to 199.
func streamLine(stream string, i int) string {
	return fmt.Sprintf("%s-%06d-%s", stream, i, strings.Repeat(stream[3:4], i%200))
}

func TestInterleaveTwoStreams(t *testing.T) {
	const n = 5000
	const max = 64
	path := logPath(t)
	w, err := Open(path, WithMaxLineSize(max))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, s := range []string{Stdout, Stderr} {
		pr, pw := io.Pipe()
		wg.Go(func() {
			if err := w.Copy(s, pr); err != nil {
				t.Errorf("Copy %s: %v", s, err)
			}
		})
		wg.Go(func() {
			bw := bufio.NewWriterSize(pw, 512) // many small pipe writes
			for i := range n {
				fmt.Fprintln(bw, streamLine(s, i))
			}
			bw.Flush()
			pw.Close()
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	// Every raw line is one intact entry: header, then content of its own
	// stream only (a first piece starts with the line's prefix, the rest is
	// the stream's letter).
	intact := map[string]*regexp.Regexp{
		Stdout: regexp.MustCompile(`^` + testTSPattern + ` stdout [PF] (stdout-\d{6}-)?o*$`),
		Stderr: regexp.MustCompile(`^` + testTSPattern + ` stderr [PF] (stderr-\d{6}-)?e*$`),
	}
	raw := readFile(t, path)
	for i, line := range strings.Split(strings.TrimSuffix(raw, "\n"), "\n") {
		f := strings.SplitN(line, " ", 4)
		if len(f) != 4 || intact[f[1]] == nil || !intact[f[1]].MatchString(line) || len(f[3]) > max {
			t.Fatalf("line %d is not one intact entry: %q", i+1, line)
		}
	}

	got := readEntries(t, path)
	for _, s := range []string{Stdout, Stderr} {
		if len(got[s]) != n {
			t.Fatalf("%s: %d lines, want %d", s, len(got[s]), n)
		}
		for i, l := range got[s] {
			if want := streamLine(s, i); l != want {
				t.Fatalf("%s line %d = %q, want %q", s, i, l, want)
			}
		}
	}
}

func TestReopenUnderConcurrentWrites(t *testing.T) {
	const n = 20000
	const rotations = 10
	path := logPath(t)
	w, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	progress := make(chan int, rotations+1) // stdout producer milestones
	var wg sync.WaitGroup
	for _, s := range []string{Stdout, Stderr} {
		pr, pw := io.Pipe()
		wg.Go(func() {
			if err := w.Copy(s, pr); err != nil {
				t.Errorf("Copy %s: %v", s, err)
			}
		})
		wg.Go(func() {
			for i := range n {
				// One pipe write per line: a rotation can fall between
				// any two lines.
				if _, err := io.WriteString(pw, streamLine(s, i)+"\n"); err != nil {
					t.Errorf("write %s: %v", s, err)
				}
				if s == Stdout && i > 0 && i%(n/(rotations+1)) == 0 {
					progress <- i
				}
			}
			pw.Close()
		})
	}
	var rotated []string
	for k := 1; k <= rotations; k++ {
		<-progress
		old := fmt.Sprintf("%s.%d", path, k)
		if err := os.Rename(path, old); err != nil {
			t.Fatal(err)
		}
		if err := w.Reopen(); err != nil {
			t.Fatal(err)
		}
		rotated = append(rotated, old)
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	files := append(rotated, path)
	nonEmpty := 0
	for _, f := range files {
		if st, err := os.Stat(f); err != nil {
			t.Fatal(err)
		} else if st.Size() > 0 {
			nonEmpty++
		}
	}
	if nonEmpty < 2 {
		t.Errorf("only %d of %d files got entries; the rotations did not interleave with the writes", nonEmpty, len(files))
	}
	got := readEntries(t, files...) // fails on a split entry
	for _, s := range []string{Stdout, Stderr} {
		if len(got[s]) != n {
			t.Fatalf("%s: %d lines across %d files, want %d", s, len(got[s]), len(files), n)
		}
		for i, l := range got[s] {
			if want := streamLine(s, i); l != want {
				t.Fatalf("%s line %d = %q, want %q (lost, duplicated or reordered)", s, i, l, want)
			}
		}
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func TestWriteFailureKeepsDraining(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Fatal("no /dev/full")
	}
	var reports []error
	var mu sync.Mutex
	w, err := Open("/dev/full", WithMaxLineSize(100), WithErrorHandler(func(err error) {
		mu.Lock()
		reports = append(reports, err)
		mu.Unlock()
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	// 2 MiB per stream through pipes: far more than a pipe buffers, so a
	// Copy that stopped reading would block the producers.
	line := strings.Repeat("x", 1000) + "\n"
	const lines = 2 * 1024
	var wg sync.WaitGroup
	errs := make(map[string]error)
	counters := make(map[string]*countingReader)
	producersDone := make(chan struct{})
	var producers sync.WaitGroup
	for _, s := range []string{Stdout, Stderr} {
		pr, pw := io.Pipe()
		cr := &countingReader{r: pr}
		counters[s] = cr
		wg.Go(func() {
			err := w.Copy(s, cr)
			mu.Lock()
			errs[s] = err
			mu.Unlock()
		})
		producers.Go(func() {
			for range lines {
				if _, err := io.WriteString(pw, line); err != nil {
					t.Errorf("producer %s: %v", s, err)
					return
				}
			}
			pw.Close()
		})
	}
	go func() { producers.Wait(); close(producersDone) }()
	select {
	case <-producersDone:
	case <-time.After(time.Minute):
		t.Fatal("producers blocked: Copy stopped draining after a write error")
	}
	wg.Wait()

	for _, s := range []string{Stdout, Stderr} {
		if got, want := counters[s].n.Load(), int64(lines*len(line)); got != want {
			t.Errorf("%s: Copy read %d bytes, want %d", s, got, want)
		}
		if !errors.Is(errs[s], syscall.ENOSPC) {
			t.Errorf("%s: Copy returned %v, want ENOSPC", s, errs[s])
		}
	}
	if len(reports) != 1 || !errors.Is(reports[0], syscall.ENOSPC) {
		t.Errorf("error handler got %v, want one ENOSPC error", reports)
	}
}

func TestWriteFailureReportedOncePerFile(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Fatal("no /dev/full")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	if err := os.Symlink("/dev/full", path); err != nil {
		t.Fatal(err)
	}
	var reports atomic.Int32
	w, err := Open(path, WithClock(fixedClock), WithErrorHandler(func(error) { reports.Add(1) }))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	if err := w.Copy(Stdout, strings.NewReader("lost 1\nlost 2\n")); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Copy to /dev/full = %v, want ENOSPC", err)
	}
	if err := w.Copy(Stderr, strings.NewReader("lost 3\n")); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Copy to /dev/full = %v, want ENOSPC", err)
	}
	if got := reports.Load(); got != 1 {
		t.Fatalf("%d reports for one failing file, want 1", got)
	}

	// Rotation to a working file: writes succeed again.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
	if err := w.Copy(Stdout, strings.NewReader("kept\n")); err != nil {
		t.Fatalf("Copy after Reopen: %v", err)
	}
	if got, want := readFile(t, path), entry("stdout", "F", "kept"); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}

	// A new failing file is reported again.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/full", path); err != nil {
		t.Fatal(err)
	}
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
	if err := w.Copy(Stdout, strings.NewReader("lost 4\n")); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Copy to /dev/full = %v, want ENOSPC", err)
	}
	if got := reports.Load(); got != 2 {
		t.Fatalf("%d reports after a second failing file, want 2", got)
	}
}

// TestTornWriteIsTerminated makes a write stop inside an entry (file size
// limit: the kernel writes what fits and fails the rest with EFBIG) and checks
// that the next entry starts on a line of its own.
func TestTornWriteIsTerminated(t *testing.T) {
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	path := logPath(t)
	w, err := Open(path, WithClock(fixedClock))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	first := entry("stdout", "F", "first")
	if err := w.Copy(Stdout, strings.NewReader("first\n")); err != nil {
		t.Fatal(err)
	}
	torn := entry("stdout", "F", strings.Repeat("t", 100))
	const keep = 50 // bytes of the torn entry that fit

	lim := old
	lim.Cur = uint64(len(first) + keep)
	if lim.Cur > lim.Max { // RLIM_INFINITY is the largest value
		t.Fatal("hard file size limit too low")
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	copyErr := w.Copy(Stdout, strings.NewReader(strings.Repeat("t", 100)+"\n"))
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(copyErr, syscall.EFBIG) {
		t.Fatalf("Copy over the size limit = %v, want EFBIG", copyErr)
	}
	if err := w.Copy(Stderr, strings.NewReader("after\n")); err != nil {
		t.Fatal(err)
	}
	want := first + torn[:keep] + "\n" + entry("stderr", "F", "after")
	if got := readFile(t, path); got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
}

func TestFileMode(t *testing.T) {
	old := syscall.Umask(0o077) // a umask that would narrow 0640
	defer syscall.Umask(old)

	path := logPath(t)
	w, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	checkMode := func(p string, want os.FileMode) {
		t.Helper()
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode(); got != want {
			t.Errorf("%s mode %v, want %v", p, got, want)
		}
	}
	checkMode(path, 0o640)

	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
	checkMode(path, 0o640)

	// An existing file keeps its mode and its content; entries are appended.
	other := filepath.Join(t.TempDir(), "existing.log")
	if err := os.WriteFile(other, []byte(entry("stdout", "F", "before")), 0o600); err != nil {
		t.Fatal(err)
	}
	w2, err := Open(other, WithClock(fixedClock))
	if err != nil {
		t.Fatal(err)
	}
	if err := w2.Copy(Stdout, strings.NewReader("after\n")); err != nil {
		t.Fatal(err)
	}
	w2.Close()
	checkMode(other, 0o600)
	if got, want := readFile(t, other), entry("stdout", "F", "before")+entry("stdout", "F", "after"); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// A missing log directory is made (as containerd and CRI-O do): a CRI
// client other than kubelet need not have made it.
func TestOpenMakesMissingDirectories(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pod", "ctr", "0.log")
	w, err := Open(path, WithClock(fixedClock))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Copy(Stdout, strings.NewReader("hi\n")); err != nil {
		t.Fatal(err)
	}
	if got, want := readFile(t, path), entry("stdout", "F", "hi"); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	for _, d := range []string{filepath.Join(dir, "pod"), filepath.Join(dir, "pod", "ctr")} {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm() != DirMode {
			t.Errorf("%s: %v, mode %v, want %v", d, err, fi.Mode().Perm(), os.FileMode(DirMode))
		}
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		desc string
		path string
	}{
		{desc: "a file where a directory must be", path: filepath.Join(file, "0.log")},
		{desc: "directory", path: dir},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			if w, err := Open(tt.path); err == nil {
				w.Close()
				t.Fatalf("Open(%q) succeeded", tt.path)
			}
		})
	}
}

func TestReopenFailureKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "pod")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(sub, "0.log")
	w, err := Open(path, WithClock(fixedClock))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	moved := filepath.Join(dir, "moved")
	if err := os.Rename(sub, moved); err != nil { // the path's directory is gone
		t.Fatal(err)
	}
	if err := w.Reopen(); err == nil {
		t.Fatal("Reopen without the directory succeeded")
	}
	if err := w.Copy(Stdout, strings.NewReader("still here\n")); err != nil {
		t.Fatal(err)
	}
	if got, want := readFile(t, filepath.Join(moved, "0.log")), entry("stdout", "F", "still here"); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestClose(t *testing.T) {
	var reports atomic.Int32
	w, err := Open(logPath(t), WithErrorHandler(func(error) { reports.Add(1) }))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := w.Reopen(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Reopen after Close = %v, want ErrClosed", err)
	}
	r := &countingReader{r: strings.NewReader(strings.Repeat("x\n", 1000))}
	if err := w.Copy(Stdout, r); !errors.Is(err, ErrClosed) {
		t.Fatalf("Copy after Close = %v, want ErrClosed", err)
	}
	if r.n.Load() != 2000 {
		t.Fatalf("Copy after Close read %d bytes, want all 2000", r.n.Load())
	}
	if reports.Load() != 0 {
		t.Fatal("writes after Close were reported to the error handler")
	}
}

func TestCopyReadError(t *testing.T) {
	path := logPath(t)
	w, err := Open(path, WithClock(fixedClock))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("a\nrest"), iotest.ErrReader(boom))
	if err := w.Copy(Stdout, r); !errors.Is(err, boom) {
		t.Fatalf("Copy = %v, want the read error", err)
	}
	if got, want := readFile(t, path), entry("stdout", "F", "a")+entry("stdout", "P", "rest"); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestHugeLineBufferIsReleased(t *testing.T) {
	w, err := Open(logPath(t), WithMaxLineSize(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	s, err := w.Stream(Stdout)
	if err != nil {
		t.Fatal(err)
	}
	s.Write(bytes.Repeat([]byte("x"), 4<<20))
	s.Write([]byte("\n"))
	if s.buf != nil && cap(*s.buf) > shrinkAbove {
		t.Fatalf("entry buffer kept %d bytes after a huge line", cap(*s.buf))
	}
}

// A stream holds an entry buffer only while a line is unfinished, so an
// idle container's streams hold no memory.
func TestStreamHoldsBufferOnlyMidLine(t *testing.T) {
	path := logPath(t)
	w, err := Open(path, WithClock(fixedClock))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	s, err := w.Stream(Stderr)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		write string
		held  bool
	}{
		{"", false},
		{"hello\n", false},
		{"par", true},
		{"tial\r", true}, // the '\r' may be half of "\r\n"
		{"\n", false},
		{"a\r", true},
		{"b\n\n", false},
	} {
		if n, err := s.Write([]byte(step.write)); n != len(step.write) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", step.write, n, err)
		}
		if held := s.buf != nil || s.cr; held != step.held {
			t.Fatalf("after Write(%q): buffer held %v, want %v", step.write, held, step.held)
		}
	}
	s.Write([]byte("end\r"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s.buf != nil {
		t.Fatal("buffer held after Close")
	}
	want := entry("stderr", "F", "hello") + entry("stderr", "F", "partial") + entry("stderr", "F", "a\rb") +
		entry("stderr", "F", "") + entry("stderr", "P", "end\r")
	if got := readFile(t, path); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestStreamInvalid(t *testing.T) {
	w, err := Open(logPath(t))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Stream("stdin"); err == nil {
		t.Fatal("Stream(stdin) succeeded")
	}
}

func benchCopy(b *testing.B, path string, lineLen int) {
	line := strings.Repeat("x", lineLen-1) + "\n"
	data := []byte(strings.Repeat(line, (4<<20)/lineLen))
	w, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	r := bytes.NewReader(data)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r.Reset(data)
		if err := w.Copy(Stdout, r); err != nil {
			b.Fatal(err)
		}
		if path != os.DevNull {
			b.StopTimer()
			if err := os.Truncate(path, 0); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	}
}

// BenchmarkCopy measures Copy throughput (input bytes per second).
func BenchmarkCopy(b *testing.B) {
	b.Run("100B-lines/file", func(b *testing.B) { benchCopy(b, logPath(b), 100) })
	b.Run("100B-lines/devnull", func(b *testing.B) { benchCopy(b, os.DevNull, 100) })
	b.Run("4KiB-lines/file", func(b *testing.B) { benchCopy(b, logPath(b), 4096) })
	b.Run("1MiB-lines-split-16KiB/file", func(b *testing.B) { benchCopy(b, logPath(b), 1<<20) })
}
