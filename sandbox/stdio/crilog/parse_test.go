package crilog

import (
	"errors"
	"strings"
	"testing"
	"time"
)

type parsed struct {
	time    time.Time
	stream  string
	partial bool
	content string
}

func parseAll(input string) ([]parsed, error) {
	var out []parsed
	err := Parse(strings.NewReader(input), func(e Entry) error {
		out = append(out, parsed{e.Time, e.Stream, e.Partial, string(e.Content)})
		return nil
	})
	return out, err
}

func TestParse(t *testing.T) {
	long := strings.Repeat("y", 200*1024) // longer than Parse's read buffer
	tests := []struct {
		desc string
		in   string
		want []parsed
	}{
		{desc: "empty input", in: ""},
		{desc: "full", in: testTS + " stdout F hello world\n",
			want: []parsed{{testTime, Stdout, false, "hello world"}}},
		{desc: "partial stderr", in: testTS + " stderr P abc\n",
			want: []parsed{{testTime, Stderr, true, "abc"}}},
		{desc: "empty content", in: testTS + " stdout F \n",
			want: []parsed{{testTime, Stdout, false, ""}}},
		{desc: "content keeps spaces, CR and tabs", in: testTS + " stdout F  a \tb\r\n",
			want: []parsed{{testTime, Stdout, false, " a \tb\r"}}},
		{desc: "forward compatible tags", in: testTS + " stdout P:future:tags x\n" + testTS + " stdout F:x y\n",
			want: []parsed{{testTime, Stdout, true, "x"}, {testTime, Stdout, false, "y"}}},
		{desc: "short fraction and zone offset", in: "2016-10-06T02:17:09.5+02:00 stdout F z\n",
			want: []parsed{{time.Date(2016, 10, 6, 0, 17, 9, 500000000, time.UTC), Stdout, false, "z"}}},
		{desc: "no fraction", in: "2016-10-06T00:17:09Z stdout F z\n",
			want: []parsed{{time.Date(2016, 10, 6, 0, 17, 9, 0, time.UTC), Stdout, false, "z"}}},
		{desc: "line longer than the read buffer", in: testTS + " stdout F " + long + "\n" + testTS + " stderr F end\n",
			want: []parsed{{testTime, Stdout, false, long}, {testTime, Stderr, false, "end"}}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			got, err := parseAll(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d entries, want %d: %+v", len(got), len(tt.want), got)
			}
			for i := range got {
				g, w := got[i], tt.want[i]
				if !g.time.Equal(w.time) || g.stream != w.stream || g.partial != w.partial || g.content != w.content {
					t.Errorf("entry %d = %+v, want %+v", i, abbrevParsed(g), abbrevParsed(w))
				}
			}
		})
	}
}

func abbrevParsed(p parsed) parsed {
	p.content = abbrev(p.content)
	return p
}

func TestParseMalformed(t *testing.T) {
	good := testTS + " stdout F ok\n"
	tests := []struct {
		desc   string
		in     string
		line   int
		reason string
	}{
		{desc: "no delimiter", in: "garbage\n", line: 1, reason: "timestamp is not found"},
		{desc: "bad timestamp", in: good + "2016-10-06 stdout F x\n", line: 2, reason: "unexpected timestamp format"},
		{desc: "timestamp without zone", in: "2016-10-06T00:17:09.1 stdout F x\n", line: 1, reason: "unexpected timestamp format"},
		{desc: "no stream delimiter", in: testTS + " stdout\n", line: 1, reason: "stream type is not found"},
		{desc: "bad stream", in: testTS + " stdin F x\n", line: 1, reason: `unexpected stream type "stdin"`},
		{desc: "no tag delimiter", in: good + good + testTS + " stdout F\n", line: 3, reason: "log tag is not found"},
		{desc: "unknown tag", in: testTS + " stdout X x\n", line: 1, reason: `unexpected log tag "X"`},
		{desc: "empty tag", in: testTS + " stdout  x\n", line: 1, reason: `unexpected log tag ""`},
		{desc: "missing final newline", in: good + testTS + " stdout F torn", line: 2, reason: "missing newline"},
		{desc: "empty line", in: good + "\n", line: 2, reason: "timestamp is not found"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			_, err := parseAll(tt.in)
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v, want a *ParseError", err)
			}
			if pe.Line != tt.line || !strings.Contains(pe.Reason, tt.reason) {
				t.Fatalf("error %v, want line %d and reason %q", err, tt.line, tt.reason)
			}
			if !strings.Contains(err.Error(), "line ") {
				t.Fatalf("error %q does not name the line", err)
			}
		})
	}
}

func TestParseCallbackError(t *testing.T) {
	stop := errors.New("stop")
	calls := 0
	err := Parse(strings.NewReader(strings.Repeat(testTS+" stdout F x\n", 3)), func(Entry) error {
		calls++
		return stop
	})
	if err != stop || calls != 1 {
		t.Fatalf("Parse = %v after %d calls, want the callback's error after 1", err, calls)
	}
}
