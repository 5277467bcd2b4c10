package stats

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// blockDevices names block devices by number the way cAdvisor labels I/O
// figures ("/dev/sda"), from sysfs (/sys/dev/block/<major>:<minor>/uevent).
// A number is looked up once; an unknown one is named "major:minor".
type blockDevices struct {
	sys   string // sysfs mount point
	mu    sync.Mutex
	names map[[2]uint64]string
}

func newBlockDevices(sys string) *blockDevices {
	return &blockDevices{sys: sys, names: map[[2]uint64]string{}}
}

func (b *blockDevices) name(major, minor uint64) string {
	num := fmt.Sprintf("%d:%d", major, minor)
	if b == nil {
		return num
	}
	key := [2]uint64{major, minor}
	b.mu.Lock()
	defer b.mu.Unlock()
	if n, ok := b.names[key]; ok {
		return n
	}
	n := num
	if raw, err := os.ReadFile(filepath.Join(b.sys, "dev", "block", num, "uevent")); err == nil {
		for line := range strings.Lines(string(raw)) {
			if dev, ok := strings.CutPrefix(strings.TrimSpace(line), "DEVNAME="); ok && dev != "" {
				n = "/dev/" + dev
			}
		}
	}
	b.names[key] = n
	return n
}

// fsDevice names the filesystem path is on as cAdvisor does: the source of
// the mount with the same device number in mountinfo ("/dev/vda1",
// "tmpfs"), or "major:minor".
func fsDevice(path, mountinfo string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return "", &os.PathError{Op: "stat", Path: path, Err: err}
	}
	num := fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))
	f, err := os.Open(mountinfo)
	if err != nil {
		return num, nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
		line := sc.Bytes()
		f := bytes.Fields(line)
		if len(f) < 3 || string(f[2]) != num {
			continue
		}
		_, post, ok := bytes.Cut(line, []byte(" - "))
		if pf := bytes.Fields(post); ok && len(pf) >= 2 {
			return string(pf[1]), nil
		}
	}
	return num, nil
}
