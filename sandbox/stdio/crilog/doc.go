// Package crilog writes container output to a log file in the CRI log
// format, the format kubelet reads for `kubectl logs`, and parses it back.
//
// # Format
//
// One entry per line:
//
//	<timestamp> <stream> <tag> <content>\n
//	2016-10-06T00:17:09.669794202Z stdout F hello
//
// stream is stdout or stderr; tag is F for a full line and P for a partial
// one (the line continues in the next entry of the same stream). The choices
// below match containerd v2 (internal/cri/io/logger.go, redirectLogs) and
// kubelet's reader (pkg/kubelet/kuberuntime/logs/logs.go, parseCRILog):
//
//   - Timestamp: time.RFC3339Nano, which drops trailing zeros of the
//     fraction and the fraction itself when it is zero ("...:09.5Z",
//     "...:09Z"). containerd does not pad either; kubelet parses with
//     RFC3339Nano and accepts any fraction length. Unlike containerd, which
//     formats time.Now() in the daemon's local zone, Writer always writes UTC
//     ("Z"), so files do not depend on the node's TZ; kubelet reads both as
//     the same instant. The time is taken when the entry is written.
//   - Line ends: the terminator "\n" or "\r\n" is not part of the content. A
//     '\r' anywhere else (also one just before EOF) is content, like
//     containerd's readLine, which drops "\r\n" even when the '\r' and '\n'
//     arrive in different reads.
//   - Empty lines are entries with empty content: "<ts> stdout F \n" (the
//     space after the tag is always written; kubelet needs it).
//   - Long lines: content is cut every max bytes (WithMaxLineSize, default
//     16 KiB like containerd's max_container_log_line_size; <= 0 means no
//     limit). A line of exactly max bytes is one F entry; max+1 bytes is a P
//     entry of max bytes and an F entry of 1 byte; every P entry of a
//     terminated line holds exactly max bytes. For max >= 16 the output is
//     byte for byte containerd's (checked against a copy of redirectLogs on
//     random input). For max < 16 containerd overshoots its limit (its read
//     buffer cannot be smaller than bufio's 16 bytes) and panics on lines of
//     32 bytes or more; Writer keeps every entry within max.
//   - End of input without a final '\n': the rest is written as P entries
//     and no F, as containerd does (the line never ended). Joining partial
//     entries therefore reproduces the input exactly, minus terminators.
//   - File: opened O_WRONLY|O_APPEND, created with mode 0640 (as containerd's
//     openLogFile; Writer also fchmods a file it creates so the umask cannot
//     narrow it). The directory must exist.
//
// # Writing
//
// A container's stdout and stderr are copied by two Copy calls on one
// Writer, each in a goroutine the caller runs; a caller that reads the
// output itself writes the chunks it read to the Stream of each (Copy is
// Stream with a read loop). Every entry is built in the stream's entry
// buffer, held only while a line is unfinished, and appended with one
// write(2) under the Writer's lock, so entries of the two streams
// interleave but never mix. Reopen (for
// kubelet's ReopenContainerLog after it renamed the file) swaps the file
// between two entries. A failed write (disk full, EFBIG) never stops Copy:
// it keeps draining its reader so the container never blocks on a full
// pipe, reports the first error per file to WithErrorHandler and returns it
// at the end. If a failed write left a truncated entry, the next successful
// write first ends that line, so later entries stay parseable.
//
// # Example
//
//	w, err := crilog.Open("/var/log/pods/ns_pod_uid/app/0.log", crilog.WithErrorHandler(func(err error) {
//		klog.ErrorS(err, "container log write failed")
//	}))
//	if err != nil {
//		return err
//	}
//	var wg sync.WaitGroup
//	wg.Go(func() { w.Copy(crilog.Stdout, stdoutPipe) })
//	wg.Go(func() { w.Copy(crilog.Stderr, stderrPipe) })
//	// On ReopenContainerLog: w.Reopen()
//	wg.Wait()
//	w.Close()
//
// With the container writing "hello\n" to stdout, "a\r\nb" to stderr and
// a 20000-byte line to stdout, the file holds, in some interleaving of the
// two streams:
//
//	2016-10-06T00:17:09.669794202Z stdout F hello
//	2016-10-06T00:17:09.669794202Z stderr F a
//	2016-10-06T00:17:09.669794202Z stderr P b
//	2016-10-06T00:17:09.669794202Z stdout P xxxx…   (16384 bytes of content)
//	2016-10-06T00:17:09.669794202Z stdout F xxxx…   (3616 bytes of content)
//
// Parse reads such a file back, one Entry per line; see ExampleWriter.
package crilog
