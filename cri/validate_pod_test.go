package cri

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// validPod is a pod config as kubelet sends it.
func validPod() *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "web-7d4b9c", Namespace: "default", Uid: "0b5c6e2a-1f7e-4c1b-9a55-5b0f6c2e8d11", Attempt: 1},
		Hostname:     "web-7d4b9c",
		LogDirectory: "/var/log/pods/default_web-7d4b9c_0b5c6e2a",
		DnsConfig:    &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10", "fd00::a"}, Searches: []string{"default.svc.cluster.local", "cluster.local"}, Options: []string{"ndots:5"}},
		PortMappings: []*runtimeapi.PortMapping{{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 80, HostPort: 8080, HostIp: "127.0.0.1"}, {Protocol: runtimeapi.Protocol_SCTP, ContainerPort: 9}},
		Labels:       map[string]string{"io.kubernetes.pod.name": "web-7d4b9c", "app": "web"},
		Annotations:  map[string]string{"kubernetes.io/config.seen": "2024-01-01T00:00:00Z"},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: "/kubepods/besteffort/pod0b5c6e2a",
			Sysctls:      map[string]string{"net.ipv4.ip_unprivileged_port_start": "0", "kernel.shm_rmid_forced": "1", "net/ipv4/conf/eth0.100/forwarding": "1"},
			Resources:    &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 1 << 30},
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				RunAsUser:          &runtimeapi.Int64Value{Value: 65535},
				RunAsGroup:         &runtimeapi.Int64Value{Value: 65535},
				SupplementalGroups: []int64{1000},
				Seccomp:            &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
				NamespaceOptions:   &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
			},
		},
	}
}

func TestValidatePodSandboxConfig(t *testing.T) {
	for _, tc := range []struct {
		desc      string
		change    func(c *runtimeapi.PodSandboxConfig)
		nilConfig bool
		wantField string // "" for valid
	}{
		{desc: "valid", change: func(*runtimeapi.PodSandboxConfig) {}},
		{desc: "minimal", change: func(c *runtimeapi.PodSandboxConfig) {
			*c = runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "a", Namespace: "b", Uid: "c"}}
		}},
		{desc: "systemd slice parent", change: func(c *runtimeapi.PodSandboxConfig) { c.Linux.CgroupParent = "kubepods-besteffort-pod1.slice" }},
		{desc: "localhost seccomp", change: func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "/var/lib/kubelet/seccomp/audit.json"}
		}},
		{desc: "user namespace", change: func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtimeapi.UserNamespace{
				Mode: runtimeapi.NamespaceMode_POD,
				Uids: []*runtimeapi.IDMapping{{HostId: 65536, Length: 65536}},
				Gids: []*runtimeapi.IDMapping{{HostId: 65536, Length: 65536}},
			}
		}},
		{desc: "nil config", nilConfig: true, wantField: "config"},
		{desc: "no metadata", change: func(c *runtimeapi.PodSandboxConfig) { c.Metadata = nil }, wantField: "config.metadata"},
		{desc: "no name", change: func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Name = "" }, wantField: "config.metadata.name"},
		{desc: "no namespace", change: func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Namespace = "" }, wantField: "config.metadata.namespace"},
		{desc: "no uid", change: func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Uid = "" }, wantField: "config.metadata.uid"},
		{desc: "name with slash", change: func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Name = "a/b" }, wantField: "config.metadata.name"},
		{desc: "name with NUL", change: func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Name = "a\x00b" }, wantField: "config.metadata.name"},
		{desc: "name with space", change: func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Namespace = "a b" }, wantField: "config.metadata.namespace"},
		{desc: "name too long", change: func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Name = strings.Repeat("a", 254) }, wantField: "config.metadata.name"},
		{desc: "name not UTF-8", change: func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Uid = "\xff" }, wantField: "config.metadata.uid"},
		{desc: "name dot dot", change: func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Name = ".." }, wantField: "config.metadata.name"},
		{desc: "hostname with underscore", change: func(c *runtimeapi.PodSandboxConfig) { c.Hostname = "web_1" }, wantField: "config.hostname"},
		{desc: "hostname too long", change: func(c *runtimeapi.PodSandboxConfig) { c.Hostname = strings.Repeat("a", 60) + ".example" }, wantField: "config.hostname"},
		{desc: "hostname trailing dash", change: func(c *runtimeapi.PodSandboxConfig) { c.Hostname = "web-" }, wantField: "config.hostname"},
		{desc: "relative log directory", change: func(c *runtimeapi.PodSandboxConfig) { c.LogDirectory = "var/log/pods" }, wantField: "config.log_directory"},
		{desc: "log directory with dot dot", change: func(c *runtimeapi.PodSandboxConfig) { c.LogDirectory = "/var/log/pods/../../etc" }, wantField: "config.log_directory"},
		{desc: "unclean log directory", change: func(c *runtimeapi.PodSandboxConfig) { c.LogDirectory = "/var/log//pods" }, wantField: "config.log_directory"},
		{desc: "dns server not an IP", change: func(c *runtimeapi.PodSandboxConfig) { c.DnsConfig.Servers = []string{"dns.example"} }, wantField: "config.dns_config.servers[0]"},
		{desc: "dns search with newline", change: func(c *runtimeapi.PodSandboxConfig) { c.DnsConfig.Searches = []string{"a\nnameserver 1.2.3.4"} }, wantField: "config.dns_config.searches[0]"},
		{desc: "dns search too long", change: func(c *runtimeapi.PodSandboxConfig) { c.DnsConfig.Searches = []string{strings.Repeat("a", 254)} }, wantField: "config.dns_config.searches[0]"},
		{desc: "too many dns searches", change: func(c *runtimeapi.PodSandboxConfig) { c.DnsConfig.Searches = make([]string, 33) }, wantField: "config.dns_config.searches"},
		{desc: "empty dns option", change: func(c *runtimeapi.PodSandboxConfig) { c.DnsConfig.Options = []string{""} }, wantField: "config.dns_config.options[0]"},
		{desc: "container port 0", change: func(c *runtimeapi.PodSandboxConfig) { c.PortMappings[0].ContainerPort = 0 }, wantField: "config.port_mappings[0].container_port"},
		{desc: "host port too big", change: func(c *runtimeapi.PodSandboxConfig) { c.PortMappings[1].HostPort = 70000 }, wantField: "config.port_mappings[1].host_port"},
		{desc: "unknown protocol", change: func(c *runtimeapi.PodSandboxConfig) { c.PortMappings[0].Protocol = 7 }, wantField: "config.port_mappings[0].protocol"},
		{desc: "bad host ip", change: func(c *runtimeapi.PodSandboxConfig) { c.PortMappings[0].HostIp = "localhost" }, wantField: "config.port_mappings[0].host_ip"},
		{desc: "empty label key", change: func(c *runtimeapi.PodSandboxConfig) { c.Labels[""] = "x" }, wantField: "config.labels"},
		{desc: "annotation value not UTF-8", change: func(c *runtimeapi.PodSandboxConfig) { c.Annotations["a"] = "\xff" }, wantField: `config.annotations["a"]`},
		{desc: "annotations too big", change: func(c *runtimeapi.PodSandboxConfig) {
			c.Annotations["a"] = strings.Repeat("x", 200<<10)
			c.Annotations["b"] = strings.Repeat("x", 100<<10)
		}, wantField: "config.annotations"},
		{desc: "non-namespaced sysctl", change: func(c *runtimeapi.PodSandboxConfig) { c.Linux.Sysctls["kernel.panic"] = "1" }, wantField: "config.linux.sysctls"},
		{desc: "vm sysctl", change: func(c *runtimeapi.PodSandboxConfig) { c.Linux.Sysctls["vm.overcommit_memory"] = "1" }, wantField: "config.linux.sysctls"},
		{desc: "net sysctl with host network", change: func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
		}, wantField: "config.linux.sysctls"},
		{desc: "ipc sysctl with host ipc", change: func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.Sysctls = map[string]string{"kernel.msgmax": "1"}
			c.Linux.SecurityContext.NamespaceOptions.Ipc = runtimeapi.NamespaceMode_NODE
		}, wantField: "config.linux.sysctls"},
		{desc: "net sysctl with host ipc is fine", change: func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.Sysctls = map[string]string{"net.core.somaxconn": "1024", "fs.mqueue.msg_max": "10"}
			c.Linux.SecurityContext.NamespaceOptions.Ipc = runtimeapi.NamespaceMode_CONTAINER
		}},
		{desc: "sysctl value with newline", change: func(c *runtimeapi.PodSandboxConfig) { c.Linux.Sysctls["kernel.sem"] = "1\n2" }, wantField: `config.linux.sysctls["kernel.sem"]`},
		{desc: "bad sysctl name", change: func(c *runtimeapi.PodSandboxConfig) { c.Linux.Sysctls["net..x"] = "1" }, wantField: "config.linux.sysctls"},
		{desc: "cgroup parent relative", change: func(c *runtimeapi.PodSandboxConfig) { c.Linux.CgroupParent = "kubepods/pod1" }, wantField: "config.linux.cgroup_parent"},
		{desc: "cgroup parent dot dot", change: func(c *runtimeapi.PodSandboxConfig) { c.Linux.CgroupParent = "/kubepods/../../x" }, wantField: "config.linux.cgroup_parent"},
		{desc: "cgroup parent slice dot dot", change: func(c *runtimeapi.PodSandboxConfig) { c.Linux.CgroupParent = "...slice" }, wantField: "config.linux.cgroup_parent"},
		{desc: "negative run_as_user", change: func(c *runtimeapi.PodSandboxConfig) { c.Linux.SecurityContext.RunAsUser.Value = -1 }, wantField: "config.linux.security_context.run_as_user"},
		{desc: "run_as_group without user", change: func(c *runtimeapi.PodSandboxConfig) { c.Linux.SecurityContext.RunAsUser = nil }, wantField: "config.linux.security_context.run_as_group"},
		{desc: "negative supplemental group", change: func(c *runtimeapi.PodSandboxConfig) { c.Linux.SecurityContext.SupplementalGroups = []int64{-5} }, wantField: "config.linux.security_context.supplemental_groups[0]"},
		{desc: "relative seccomp ref", change: func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "profiles/audit.json"}
		}, wantField: "config.linux.security_context.seccomp.localhost_ref"},
		{desc: "seccomp ref with NUL", change: func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "/a\x00"}
		}, wantField: "config.linux.security_context.seccomp.localhost_ref"},
		{desc: "deprecated seccomp garbage", change: func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.SeccompProfilePath = "mine"
		}, wantField: "config.linux.security_context.seccomp_profile_path"},
		{desc: "deprecated seccomp relative localhost", change: func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.SeccompProfilePath = "localhost/audit.json"
		}, wantField: "config.linux.security_context.seccomp_profile_path"},
		{desc: "pid mode target for a pod", change: func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_TARGET
		}, wantField: "config.linux.security_context.namespace_options.pid"},
		{desc: "userns pod without mappings", change: func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD}
		}, wantField: "config.linux.security_context.namespace_options.userns_options"},
		{desc: "negative pod memory", change: func(c *runtimeapi.PodSandboxConfig) { c.Linux.Resources.MemoryLimitInBytes = -1 }, wantField: "config.linux.resources.memory_limit_in_bytes"},
		{desc: "bad overhead shares", change: func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.Overhead = &runtimeapi.LinuxContainerResources{CpuShares: 1}
		}, wantField: "config.linux.overhead.cpu_shares"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			var c *runtimeapi.PodSandboxConfig
			if !tc.nilConfig {
				c = validPod()
				tc.change(c)
			}
			checkValidation(t, validatePodSandboxConfig(c), tc.wantField)
		})
	}
}

// checkValidation checks a validation result: nil when wantField is "",
// else InvalidArgument naming the field.
func checkValidation(t *testing.T, err error, wantField string) {
	t.Helper()
	if wantField == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("want an error about %s, got none", wantField)
	}
	if !errdefs.IsInvalidArgument(err) {
		t.Errorf("error %v is not InvalidArgument", err)
	}
	if !strings.Contains(err.Error(), wantField+":") {
		t.Errorf("error %q does not name %s", err, wantField)
	}
}
