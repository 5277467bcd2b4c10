package preflight

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strings"
)

// nriPluginName is how NRI names the plugins it launches: a two-digit
// index, a dash, a name. NRI refuses to start on any other executable in
// the plugin directory.
var nriPluginName = regexp.MustCompile(`^[0-9]{2}-.+$`)

// checkNRI: the socket NRI plugins connect to is free (NRI replaces what
// is there, and accel-cri refuses a socket another process answers on),
// and the plugins accel-cri would launch are named so NRI starts.
func checkNRI(_ context.Context, c *checker) []Result {
	const item = "nri"
	n := c.cfg.NRI
	if !n.Enable {
		return []Result{ok(item, "off ([nri] enable = false)")}
	}
	var plugins, bad []string
	entries, err := c.host.ReadDir(n.PluginPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return []Result{fail(item, "make "+n.PluginPath+" readable, or set [nri] plugin_path", "plugin_path %s: %v", n.PluginPath, err)}
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || e.IsDir() || info.Mode()&0o111 == 0 {
			continue
		}
		if nriPluginName.MatchString(e.Name()) {
			plugins = append(plugins, e.Name())
		} else {
			bad = append(bad, e.Name())
		}
	}
	if len(bad) > 0 {
		return []Result{fail(item, "rename them <index>-<name> (two digits, a dash, a name) or move them out of "+n.PluginPath,
			"executables in plugin_path %s NRI cannot name: %s; accel-cri would not start", n.PluginPath, strings.Join(bad, ", "))}
	}
	launched := "no plugins to launch in " + n.PluginPath
	if len(plugins) > 0 {
		launched = fmt.Sprintf("launches %s from %s", strings.Join(plugins, ", "), n.PluginPath)
	}
	if !n.ExternalPlugins {
		return []Result{ok(item, "%s; no socket (external_plugins = false)", launched)}
	}
	sock := c.cfg.NRISocket()
	fi, err := c.host.Stat(sock)
	switch {
	case err != nil && errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return []Result{fail(item, "fix the path or set [nri] socket_path", "socket_path %s: %v", sock, err)}
	case fi.Mode().Type() != fs.ModeSocket:
		return []Result{fail(item, "remove it or set [nri] socket_path", "%s exists and is not a socket; accel-cri would not start", sock)}
	case c.host.SocketAnswers(sock):
		return []Result{warn(item, "if accel-cri is not running, another runtime serves NRI on "+sock+": set [nri] socket_path to a path of accel-cri's own",
			"%s answers: this is accel-cri's own NRI if it runs, else accel-cri would refuse to start; %s", sock, launched)}
	}
	return []Result{ok(item, "plugins connect on %s; %s", sock, launched)}
}
