package stdio

import (
	"io"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// outputBufSize is the read size of an output stream with data. Buffers
// are pooled and held only while output flows, so it can be large.
const outputBufSize = 32 << 10

var outputBufs = sync.Pool{New: func() any {
	b := make([]byte, outputBufSize)
	return &b
}}

// drain reads f, a non-blocking FIFO in the poller, until EOF and hands
// every chunk to out. An idle stream holds no buffer: it waits in a
// one-byte read, and only once output arrives takes a pooled buffer, fills
// it with whatever else is ready without waiting, and gives it back when
// nothing more is. It returns nil at EOF, else the read error (also when f
// was closed).
func drain(f *os.File, out func([]byte)) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var first [1]byte
	for {
		n, err := f.Read(first[:])
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if n == 0 {
			continue
		}
		bp := outputBufs.Get().(*[]byte)
		b := *bp
		b[0] = first[0]
		k := 1
		for {
			m, rerr := readReady(rc, b[k:])
			k += m
			if (k == len(b) || m == 0 || rerr != nil) && k > 0 {
				out(b[:k])
				k = 0
			}
			if rerr != nil {
				outputBufs.Put(bp)
				if rerr == io.EOF {
					return nil
				}
				return rerr
			}
			if m == 0 {
				break
			}
		}
		outputBufs.Put(bp)
	}
}

// readReady reads what the descriptor has now, without waiting: 0, nil
// when nothing is ready, io.EOF when no writer is left.
func readReady(rc syscall.RawConn, p []byte) (int, error) {
	var n int
	var err error
	if cerr := rc.Read(func(fd uintptr) bool {
		for {
			n, err = unix.Read(int(fd), p)
			if err != unix.EINTR {
				return true // never wait in the poller here
			}
		}
	}); cerr != nil {
		return 0, cerr
	}
	switch {
	case err == unix.EAGAIN:
		return 0, nil
	case err != nil:
		return 0, err
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}
