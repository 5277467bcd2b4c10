package crilog_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/accel-cri/accel-cri/sandbox/stdio/crilog"
)

func ExampleWriter() {
	dir, err := os.MkdirTemp("", "crilog-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "0.log")

	clock := func() time.Time { return time.Date(2016, 10, 6, 0, 17, 9, 669794202, time.UTC) }
	w, err := crilog.Open(path, crilog.WithMaxLineSize(8), crilog.WithClock(clock))
	if err != nil {
		panic(err)
	}
	// In the runtime these run in two goroutines on the container's pipes.
	w.Copy(crilog.Stdout, strings.NewReader("hello\n\nline of 13 bytes\n"))
	w.Copy(crilog.Stderr, strings.NewReader("a\r\nno newline at EOF"))
	w.Close()

	// The file, with each line's end marked by '|' (an empty entry ends in
	// a space).
	b, _ := os.ReadFile(path)
	fmt.Print(strings.ReplaceAll(string(b), "\n", "|\n"))

	fmt.Println("-- parsed:")
	f, _ := os.Open(path)
	defer f.Close()
	crilog.Parse(f, func(e crilog.Entry) error {
		fmt.Printf("%s partial=%v %q\n", e.Stream, e.Partial, e.Content)
		return nil
	})
	// Output:
	// 2016-10-06T00:17:09.669794202Z stdout F hello|
	// 2016-10-06T00:17:09.669794202Z stdout F |
	// 2016-10-06T00:17:09.669794202Z stdout P line of |
	// 2016-10-06T00:17:09.669794202Z stdout F 13 bytes|
	// 2016-10-06T00:17:09.669794202Z stderr F a|
	// 2016-10-06T00:17:09.669794202Z stderr P no newli|
	// 2016-10-06T00:17:09.669794202Z stderr P ne at EO|
	// 2016-10-06T00:17:09.669794202Z stderr P F|
	// -- parsed:
	// stdout partial=false "hello"
	// stdout partial=false ""
	// stdout partial=true "line of "
	// stdout partial=false "13 bytes"
	// stderr partial=false "a"
	// stderr partial=true "no newli"
	// stderr partial=true "ne at EO"
	// stderr partial=true "F"
}
