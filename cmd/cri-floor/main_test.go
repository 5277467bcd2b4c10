package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// The serving itself runs in the A/B benchmark (test/bench, also at CI
// size); here, what is refused before anything is served.
func TestRunRefuses(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"no socket":     {[]string{"--answers", dir}, "usage:"},
		"no answers":    {[]string{"--socket", filepath.Join(dir, "s")}, "usage:"},
		"extra args":    {[]string{"--socket", filepath.Join(dir, "s"), "--answers", dir, "x"}, "usage:"},
		"missing files": {[]string{"--socket", filepath.Join(dir, "s"), "--answers", dir}, "ListPodSandbox"},
		"unknown flag":  {[]string{"--nope"}, "not defined"},
	} {
		err := run(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, tc.want)
		}
	}
}
