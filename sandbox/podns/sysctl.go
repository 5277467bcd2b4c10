package podns

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	cnins "github.com/containernetworking/plugins/pkg/ns"
)

// ApplyNetSysctls writes the pod's net.* sysctls inside its network
// namespace (/proc/sys/net acts on the writer's network namespace); the
// others in sysctls are left out.
func ApplyNetSysctls(netnsPath string, sysctls map[string]string) error {
	_, net := SplitSysctls(sysctls)
	if len(net) == 0 {
		return nil
	}
	return cnins.WithNetNSPath(netnsPath, func(cnins.NetNS) error { return writeSysctls(net) })
}

// SplitSysctls splits the pod's sysctls (validated to be namespaced) into
// IPC ones and net ones.
func SplitSysctls(s map[string]string) (ipc, net map[string]string) {
	ipc, net = map[string]string{}, map[string]string{}
	for k, v := range s {
		if strings.HasPrefix(k, "net.") || strings.HasPrefix(k, "net/") {
			net[k] = v
		} else {
			ipc[k] = v
		}
	}
	return ipc, net
}

// writeSysctls writes sysctls in key order. Kubernetes names use '.' as the
// separator and '/' for a dot inside a component (a VLAN interface name),
// the reverse of the /proc/sys path.
func writeSysctls(s map[string]string) error {
	for _, k := range slices.Sorted(maps.Keys(s)) {
		if err := os.WriteFile(sysctlPath(k), []byte(s[k]), 0); err != nil {
			return fmt.Errorf("pod sysctl %s=%q: %w", k, s[k], err)
		}
	}
	return nil
}

func sysctlPath(name string) string {
	if i := strings.IndexAny(name, "./"); i < 0 || name[i] == '/' {
		return filepath.Join("/proc/sys", name) // already in slash form
	}
	swapped := strings.Map(func(r rune) rune {
		switch r {
		case '.':
			return '/'
		case '/':
			return '.'
		}
		return r
	}, name)
	return filepath.Join("/proc/sys", swapped)
}
