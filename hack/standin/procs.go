package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// pgrep prints, one a line in ascending order, the PIDs of the processes
// under root/proc whose name (comm) matches the pattern, or with -f whose
// command line (arguments joined by spaces) does; never self. Exit status as
// procps: 0 when something matched, 1 when nothing did, 2 on a usage error.
func pgrep(root string, args []string, self int) int {
	full := false
	var pattern string
	for i, a := range args {
		if a == "-f" {
			full = true
			continue
		}
		if strings.HasPrefix(a, "-") || pattern != "" {
			fmt.Fprintf(os.Stderr, "pgrep: usage: pgrep [-f] PATTERN (got %q)\n", args[i:])
			return 2
		}
		pattern = a
	}
	if pattern == "" {
		fmt.Fprintln(os.Stderr, "pgrep: no matching criteria specified")
		return 2
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgrep: %v\n", err)
		return 2
	}
	pids := matchProcs(filepath.Join(root, "proc"), re, full, self)
	for _, p := range pids {
		fmt.Println(p)
	}
	if len(pids) == 0 {
		return 1
	}
	return 0
}

// matchProcs lists the PIDs under procDir whose comm (or cmdline) matches re.
// A process that exits while it is read is left out.
func matchProcs(procDir string, re *regexp.Regexp, full bool, self int) []int {
	ents, _ := os.ReadDir(procDir)
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		var subject string
		if full {
			b, err := os.ReadFile(filepath.Join(procDir, e.Name(), "cmdline"))
			if err != nil || len(b) == 0 {
				continue
			}
			subject = string(bytes.ReplaceAll(bytes.TrimRight(b, "\x00"), []byte{0}, []byte{' '}))
		} else {
			b, err := os.ReadFile(filepath.Join(procDir, e.Name(), "comm"))
			if err != nil {
				continue
			}
			subject = strings.TrimSuffix(string(b), "\n")
		}
		if re.MatchString(subject) {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids)
	return pids
}

// ipcSection is one kind of System V IPC object as ipcs prints it.
type ipcSection struct {
	flag, file, title, idCol string
	// cols are the /proc/sysvipc columns printed after key, id, owner and
	// perms, with their headings.
	cols, heads []string
}

var ipcSections = []ipcSection{
	{"-m", "shm", "Shared Memory Segments", "shmid", []string{"size", "nattch"}, []string{"bytes", "nattch"}},
	{"-q", "msg", "Message Queues", "msqid", []string{"cbytes", "qnum"}, []string{"used-bytes", "messages"}},
	{"-s", "sem", "Semaphore Arrays", "semid", []string{"nsems"}, []string{"nsems"}},
}

// ipcs prints the IPC objects of root/proc/sysvipc in util-linux's layout:
// shared memory (-m), message queues (-q), semaphores (-s), or all (-a or no
// option).
func ipcs(root string, args []string) int {
	want := map[string]bool{}
	for _, a := range args {
		switch a {
		case "-m", "-q", "-s":
			want[a] = true
		case "-a":
			want["-m"], want["-q"], want["-s"] = true, true, true
		default:
			fmt.Fprintf(os.Stderr, "ipcs: usage: ipcs [-m|-q|-s|-a] (got %q)\n", a)
			return 1
		}
	}
	if len(want) == 0 {
		want["-m"], want["-q"], want["-s"] = true, true, true
	}
	users := readUsers(filepath.Join(root, "etc/passwd"))
	for _, s := range ipcSections {
		if !want[s.flag] {
			continue
		}
		out, err := formatIPC(s, filepath.Join(root, "proc/sysvipc", s.file), users)
		if err != nil {
			fmt.Fprintf(os.Stderr, "ipcs: %v\n", err)
			return 1
		}
		fmt.Print(out)
	}
	return 0
}

// formatIPC renders one section from a /proc/sysvipc table, whose first line
// names the columns.
func formatIPC(s ipcSection, path string, users map[string]string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "\n------ %s --------\n", s.title)
	heads := append([]string{"key", s.idCol, "owner", "perms"}, s.heads...)
	for _, h := range heads {
		fmt.Fprintf(&b, "%-10s ", h)
	}
	b.WriteString("\n")
	sc := bufio.NewScanner(f)
	idx := map[string]int{}
	for n := 0; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		if n == 0 {
			for i, name := range fields {
				idx[name] = i
			}
			for _, c := range append([]string{"key", s.idCol, "perms", "uid"}, s.cols...) {
				if _, ok := idx[c]; !ok {
					return "", fmt.Errorf("%s: no column %q", path, c)
				}
			}
			continue
		}
		get := func(c string) string {
			if i := idx[c]; i < len(fields) {
				return fields[i]
			}
			return ""
		}
		key, err := strconv.ParseInt(get("key"), 10, 64)
		if err != nil {
			return "", fmt.Errorf("%s: key %q: %v", path, get("key"), err)
		}
		perms, err := strconv.ParseUint(get("perms"), 8, 32) // the kernel prints it in octal
		if err != nil {
			return "", fmt.Errorf("%s: perms %q: %v", path, get("perms"), err)
		}
		owner := get("uid")
		if name, ok := users[owner]; ok {
			owner = name
		}
		row := []string{fmt.Sprintf("0x%08x", uint32(key)), get(s.idCol), owner, fmt.Sprintf("%o", perms&0o777)}
		for _, c := range s.cols {
			row = append(row, get(c))
		}
		for _, v := range row {
			fmt.Fprintf(&b, "%-10s ", v)
		}
		b.WriteString("\n")
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	b.WriteString("\n")
	return b.String(), nil
}

// readUsers maps uids to user names from a passwd file (empty if unreadable).
func readUsers(path string) map[string]string {
	users := map[string]string{}
	b, err := os.ReadFile(path)
	if err != nil {
		return users
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) >= 3 {
			if _, ok := users[f[2]]; !ok {
				users[f[2]] = f[0]
			}
		}
	}
	return users
}
