package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/containerd/errdefs"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Store finds the policy for a pull: the pod namespace's file
// <dir>/<namespace>.json when there is one, else the default file. Files are
// parsed when first used and again when they or a key file they name change
// (checked with a stat on every use: no watcher, no goroutine). Its methods
// are safe for concurrent use.
type Store struct {
	defaultFile string
	dir         string

	mu    sync.Mutex
	files map[string]*loaded // path -> last parse
}

// loaded is one parse of a policy file and the file states it saw.
type loaded struct {
	stamp  stamp
	keys   map[string]stamp
	policy *Policy
	err    error
}

// stamp identifies a version of a file; a change of any field means the
// file changed.
type stamp struct {
	ino, size, mtime, ctime int64
	missing                 bool
}

// NewStore returns the store of the default policy file defaultFile and the
// per-namespace directory dir; either may be "" (not configured). With
// neither, no policy applies to any pull.
func NewStore(defaultFile, dir string) *Store {
	return &Store{defaultFile: defaultFile, dir: dir, files: map[string]*loaded{}}
}

// Enabled reports whether any policy is configured.
func (s *Store) Enabled() bool { return s != nil && (s.defaultFile != "" || s.dir != "") }

// For returns the policy for pulls of pods in namespace ns ("" for a pull
// without a pod, crictl's say), or nil when none applies. An error means a
// policy applies but cannot be used (it wraps ErrInvalid and names the
// file); the caller must refuse the image. A namespace that is not a DNS
// label is InvalidArgument (it would name a file).
func (s *Store) For(ns string) (*Policy, error) {
	if !s.Enabled() {
		return nil, nil
	}
	if s.dir != "" && ns != "" {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return nil, fmt.Errorf("%w: pod namespace %q: %s", errdefs.ErrInvalidArgument, ns, strings.Join(errs, "; "))
		}
		p, err := s.load(filepath.Join(s.dir, ns+".json"), true)
		if p != nil || err != nil {
			return p, err
		}
	}
	if s.defaultFile == "" {
		return nil, nil
	}
	return s.load(s.defaultFile, false)
}

// load returns the parse of path, parsing it again when it or its key files
// changed. A missing file is (nil, nil) when optional.
func (s *Store) load(path string, optional bool) (*Policy, error) {
	st := statOf(path)
	s.mu.Lock()
	defer s.mu.Unlock()
	if st.missing {
		delete(s.files, path)
		if optional {
			return nil, nil
		}
		return nil, fmt.Errorf("%w: policy file %s does not exist", ErrInvalid, path)
	}
	if l, ok := s.files[path]; ok && l.stamp == st && keysUnchanged(l.keys) {
		return l.policy, l.err
	}
	l := &loaded{stamp: st, keys: map[string]stamp{}}
	l.policy, l.err = ParseFile(path)
	if l.policy != nil {
		for _, k := range l.policy.keyFiles {
			l.keys[k] = statOf(k)
		}
	}
	// A failed parse is kept too: it is retried when the file changes,
	// and until then every pull under it fails with the same error.
	s.files[path] = l
	return l.policy, l.err
}

func keysUnchanged(keys map[string]stamp) bool {
	for path, st := range keys {
		if statOf(path) != st {
			return false
		}
	}
	return true
}

func statOf(path string) stamp {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{missing: errors.Is(err, fs.ErrNotExist)}
	}
	st := stamp{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = int64(sys.Ino)
		st.ctime = sys.Ctim.Nano()
	}
	return st
}

// FileCheck is the result of checking one policy file.
type FileCheck struct {
	// File is the policy file's path.
	File string
	// Namespace is the pod namespace the file is for ("" for the default).
	Namespace string
	// Scopes counts the file's docker scopes.
	Scopes int
	// Unused: a file in the directory no pull uses (its name is not
	// <namespace>.json); Err says why.
	Unused bool
	// Err is why the file cannot be used, or nil.
	Err error
}

// Check parses every policy file the store would use: the default file and
// each <namespace>.json in the directory. A file in the directory whose name
// is not a namespace's is reported: no pull would ever use it.
func (s *Store) Check() ([]FileCheck, error) {
	var out []FileCheck
	if s.defaultFile != "" {
		p, err := ParseFile(s.defaultFile)
		out = append(out, FileCheck{File: s.defaultFile, Scopes: scopes(p), Err: err})
	}
	if s.dir == "" {
		return out, nil
	}
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return out, fmt.Errorf("signature policy directory %s: %w", s.dir, err)
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
	for _, e := range ents {
		path := filepath.Join(s.dir, e.Name())
		ns, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || e.IsDir() {
			out = append(out, FileCheck{File: path, Unused: true, Err: fmt.Errorf("%w: %s is not <namespace>.json: no pull uses it", ErrInvalid, path)})
			continue
		}
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			out = append(out, FileCheck{File: path, Unused: true, Err: fmt.Errorf("%w: %s: %q is not a namespace name (%s): no pull uses it", ErrInvalid, path, ns, strings.Join(errs, "; "))})
			continue
		}
		p, err := ParseFile(path)
		out = append(out, FileCheck{File: path, Namespace: ns, Scopes: scopes(p), Err: err})
	}
	return out, nil
}

func scopes(p *Policy) int {
	if p == nil {
		return 0
	}
	return len(p.Docker)
}
