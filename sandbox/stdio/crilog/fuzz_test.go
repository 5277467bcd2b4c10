package crilog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"
)

// expectedLines is the model of Copy: the input split at '\n' with a
// terminating "\r\n" or "\n" removed; bytes after the last '\n' are an
// unterminated line.
func expectedLines(data []byte) (lines [][]byte, unterminated []byte) {
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return lines, data
		}
		lines = append(lines, bytes.TrimSuffix(data[:i], []byte{'\r'}))
		data = data[i+1:]
	}
}

// FuzzRoundTrip checks that whatever Copy writes, Parse reads back to the
// input lines, with the containerd splitting rules: each entry holds at most
// max content bytes, P entries of a line hold exactly max, and the bytes
// after the last newline come back as P entries only.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte("hello\n\nworld\r\nend"), 0, uint8(0), false)
	f.Add([]byte("12345678\r\n123456789\n"), 8, uint8(0), true)
	f.Add(bytes.Repeat([]byte("0123456789abcdef\r"), 40), 16, uint8(1), false)
	dir := f.TempDir()
	var seq atomic.Int64
	f.Fuzz(func(t *testing.T, data []byte, maxLine int, readBuf uint8, oneByte bool) {
		// max in 1..64, or no limit; read buffer 16..271 bytes, so that
		// short inputs still span buffer refills.
		max := 0
		if m := maxLine % 65; m > 0 {
			max = m
		}
		opts := []Option{WithClock(fixedClock), WithMaxLineSize(max), withReadBufferSize(16 + int(readBuf))}
		path := filepath.Join(dir, strconv.FormatInt(seq.Add(1), 10)+".log")
		defer os.Remove(path)
		w, err := Open(path, opts...)
		if err != nil {
			t.Fatal(err)
		}
		var src io.Reader = bytes.NewReader(data)
		if oneByte {
			src = iotest.OneByteReader(src)
		}
		if err := w.Copy(Stdout, src); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		out, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}

		wantLines, wantRest := expectedLines(data)
		var gotLines [][]byte
		var cur []byte
		var pieces []int // content lengths of the entries of the current line
		checkPieces := func(final bool) {
			for i, n := range pieces {
				last := i == len(pieces)-1
				switch {
				case max > 0 && n > max:
					t.Fatalf("entry of %d bytes exceeds max %d", n, max)
				case max > 0 && !last && n != max:
					t.Fatalf("non-final piece of %d bytes, want exactly max %d (pieces %v)", n, max, pieces)
				case max <= 0 && !last:
					t.Fatalf("line split without a size limit (pieces %v)", pieces)
				case last && n == 0 && (len(pieces) > 1 || final):
					t.Fatalf("empty final piece (pieces %v, unterminated %v)", pieces, final)
				}
			}
		}
		err = Parse(bytes.NewReader(out), func(e Entry) error {
			if e.Stream != Stdout || !e.Time.Equal(testTime) {
				t.Fatalf("entry header %v %q", e.Time, e.Stream)
			}
			cur = append(cur, e.Content...)
			pieces = append(pieces, len(e.Content))
			if !e.Partial {
				checkPieces(false)
				gotLines = append(gotLines, cur)
				cur, pieces = nil, nil
			}
			return nil
		})
		if err != nil {
			t.Fatalf("Parse of Copy output: %v\n%q", err, out)
		}
		checkPieces(true)
		if len(gotLines) != len(wantLines) {
			t.Fatalf("%d lines, want %d\nout: %q", len(gotLines), len(wantLines), out)
		}
		for i := range gotLines {
			if !bytes.Equal(gotLines[i], wantLines[i]) {
				t.Fatalf("line %d = %q, want %q", i, gotLines[i], wantLines[i])
			}
		}
		if !bytes.Equal(cur, wantRest) {
			t.Fatalf("unterminated rest = %q, want %q", cur, wantRest)
		}
	})
}

// FuzzParse checks that Parse never panics, fails only with a *ParseError
// naming a line, and on accepted input yields one entry per line with valid
// streams and newline-free content.
func FuzzParse(f *testing.F) {
	f.Add([]byte(testTS + " stdout F hello\n"))
	f.Add([]byte(testTS + " stderr P:x a b\n2016-10-06T00:17:09Z stdout F \n"))
	f.Add([]byte("2016-10-06T02:17:09.5+02:00 stdout F z\n"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var contentBytes, entries int
		err := Parse(bytes.NewReader(data), func(e Entry) error {
			if e.Stream != Stdout && e.Stream != Stderr {
				t.Fatalf("stream %q accepted", e.Stream)
			}
			if bytes.IndexByte(e.Content, '\n') >= 0 {
				t.Fatalf("content %q holds a newline", e.Content)
			}
			contentBytes += len(e.Content)
			entries++
			return nil
		})
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Line < 1 {
				t.Fatalf("error %v is not a *ParseError with a line", err)
			}
			return
		}
		if contentBytes+entries > len(data) {
			t.Fatalf("%d content bytes in %d entries from %d input bytes", contentBytes, entries, len(data))
		}
		if entries != bytes.Count(data, []byte{'\n'}) {
			t.Fatalf("%d entries from %d lines", entries, bytes.Count(data, []byte{'\n'}))
		}
		// Round trip: the entries written back in the writer's form (UTC,
		// RFC3339Nano, one tag) parse to the same entries.
		var first []Entry
		var rendered bytes.Buffer
		if err := Parse(bytes.NewReader(data), func(e Entry) error {
			e.Content = bytes.Clone(e.Content)
			first = append(first, e)
			tag := "F"
			if e.Partial {
				tag = "P"
			}
			fmt.Fprintf(&rendered, "%s %s %s %s\n", e.Time.UTC().Format(time.RFC3339Nano), e.Stream, tag, e.Content)
			return nil
		}); err != nil {
			t.Fatalf("second parse: %v", err)
		}
		i := 0
		if err := Parse(bytes.NewReader(rendered.Bytes()), func(e Entry) error {
			w := first[i]
			if !e.Time.Equal(w.Time) || e.Stream != w.Stream || e.Partial != w.Partial || !bytes.Equal(e.Content, w.Content) {
				t.Fatalf("entry %d re-parsed as %+v, want %+v", i, e, w)
			}
			i++
			return nil
		}); err != nil {
			t.Fatalf("parse of re-rendered entries: %v\n%q", err, rendered.Bytes())
		}
		if i != len(first) {
			t.Fatalf("%d entries re-parsed, want %d", i, len(first))
		}
	})
}
