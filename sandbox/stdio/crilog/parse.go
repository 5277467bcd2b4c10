package crilog

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"time"
)

// Entry is one parsed line of a CRI log file.
type Entry struct {
	// Time is the entry's timestamp (the zone as written; Writer writes UTC).
	Time time.Time
	// Stream is Stdout or Stderr.
	Stream string
	// Partial is true for a P entry: the container's line continues in the
	// next entry of the same stream.
	Partial bool
	// Content is the entry's content without the file's line terminator.
	// It aliases Parse's buffer and is valid only until the callback returns.
	Content []byte
}

// ParseError is the error Parse returns for a malformed line.
type ParseError struct {
	Line   int    // 1-based line number in the input
	Reason string // what is wrong
	Text   []byte // the start of the line, at most 64 bytes
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("crilog: line %d: %s: %q", e.Line, e.Reason, e.Text)
}

// Parse reads CRI log entries from r and calls fn for each, in order. It
// returns nil at EOF, the error of fn unchanged if fn fails, a read error
// wrapped, or a *ParseError for the first malformed line.
//
// A line is "<timestamp> <stream> <tags> <content>\n" as kubelet's
// parseCRILog reads it: the timestamp must parse with time.RFC3339Nano, the
// stream must be stdout or stderr, and the tags field is split at ':' with
// the first tag deciding partial ("P") or full ("F"). Parse is stricter than
// kubelet in two ways: a first tag other than P or F is an error (kubelet
// reads it as F), and so is a last line without '\n' (kubelet logs
// "Incomplete line" and uses it; for a file being written it is an entry that
// is not finished yet).
func Parse(r io.Reader, fn func(Entry) error) error {
	br := bufio.NewReaderSize(r, 64*1024)
	var long []byte // a line longer than the read buffer is assembled here
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			long = append(long[:0], line...)
			for err == bufio.ErrBufferFull {
				line, err = br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if err != nil {
			if len(line) == 0 && err == io.EOF {
				return nil
			}
			if err != io.EOF {
				return fmt.Errorf("crilog: read line %d: %w", lineNo, err)
			}
			return parseError(lineNo, "missing newline at end of entry", line)
		}
		e, reason := parseLine(line[:len(line)-1])
		if reason != "" {
			return parseError(lineNo, reason, line)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}

func parseError(lineNo int, reason string, line []byte) error {
	text := line
	if len(text) > 64 {
		text = text[:64]
	}
	return &ParseError{Line: lineNo, Reason: reason, Text: bytes.Clone(text)}
}

// parseLine parses one line without its '\n'. A non-empty reason means the
// line is malformed.
func parseLine(line []byte) (e Entry, reason string) {
	ts, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok {
		return e, "timestamp is not found"
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return e, "unexpected timestamp format: " + err.Error()
	}
	stream, rest, ok := bytes.Cut(rest, []byte{' '})
	if !ok {
		return e, "stream type is not found"
	}
	switch string(stream) {
	case Stdout:
		e.Stream = Stdout
	case Stderr:
		e.Stream = Stderr
	default:
		return e, fmt.Sprintf("unexpected stream type %q", stream)
	}
	tags, content, ok := bytes.Cut(rest, []byte{' '})
	if !ok {
		return e, "log tag is not found"
	}
	tag, _, _ := bytes.Cut(tags, []byte{':'})
	switch string(tag) {
	case TagPartial:
		e.Partial = true
	case TagFull:
	default:
		return e, fmt.Sprintf("unexpected log tag %q", tag)
	}
	e.Time = t
	e.Content = content
	return e, ""
}
