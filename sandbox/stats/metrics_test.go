package stats

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/timestamppb"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// cadvisorMetrics are the container metrics kubelet's cAdvisor serves on
// /metrics/cadvisor (the metric sets kubelet enables: cpu, memory, disk
// usage and I/O, network, process, OOM, pressure), with their types and
// labels after the base ones; written out here, not taken from the code.
var cadvisorMetrics = map[string]struct {
	typ   runtimeapi.MetricType
	extra string
}{
	"container_last_seen":                              {gauge, ""},
	"container_start_time_seconds":                     {gauge, ""},
	"container_cpu_usage_seconds_total":                {counter, "cpu"},
	"container_cpu_user_seconds_total":                 {counter, ""},
	"container_cpu_system_seconds_total":               {counter, ""},
	"container_cpu_cfs_periods_total":                  {counter, ""},
	"container_cpu_cfs_throttled_periods_total":        {counter, ""},
	"container_cpu_cfs_throttled_seconds_total":        {counter, ""},
	"container_memory_cache":                           {gauge, ""},
	"container_memory_rss":                             {gauge, ""},
	"container_memory_kernel_usage":                    {gauge, ""},
	"container_memory_mapped_file":                     {gauge, ""},
	"container_memory_swap":                            {gauge, ""},
	"container_memory_failcnt":                         {counter, ""},
	"container_memory_usage_bytes":                     {gauge, ""},
	"container_memory_max_usage_bytes":                 {gauge, ""},
	"container_memory_working_set_bytes":               {gauge, ""},
	"container_memory_total_active_file_bytes":         {gauge, ""},
	"container_memory_total_inactive_file_bytes":       {gauge, ""},
	"container_memory_failures_total":                  {counter, "failure_type,scope"},
	"container_oom_events_total":                       {counter, ""},
	"container_fs_inodes_free":                         {gauge, "device"},
	"container_fs_inodes_total":                        {gauge, "device"},
	"container_fs_limit_bytes":                         {gauge, "device"},
	"container_fs_usage_bytes":                         {gauge, "device"},
	"container_fs_reads_bytes_total":                   {counter, "device"},
	"container_fs_reads_total":                         {counter, "device"},
	"container_fs_writes_bytes_total":                  {counter, "device"},
	"container_fs_writes_total":                        {counter, "device"},
	"container_blkio_device_usage_total":               {counter, "device,major,minor,operation"},
	"container_network_receive_bytes_total":            {counter, "interface"},
	"container_network_receive_packets_total":          {counter, "interface"},
	"container_network_receive_packets_dropped_total":  {counter, "interface"},
	"container_network_receive_errors_total":           {counter, "interface"},
	"container_network_transmit_bytes_total":           {counter, "interface"},
	"container_network_transmit_packets_total":         {counter, "interface"},
	"container_network_transmit_packets_dropped_total": {counter, "interface"},
	"container_network_transmit_errors_total":          {counter, "interface"},
	"container_processes":                              {gauge, ""},
	"container_file_descriptors":                       {gauge, ""},
	"container_sockets":                                {gauge, ""},
	"container_threads":                                {gauge, ""},
	"container_threads_max":                            {gauge, ""},
	"container_ulimits_soft":                           {gauge, "ulimit"},
	"container_spec_cpu_period":                        {gauge, ""},
	"container_spec_cpu_quota":                         {gauge, ""},
	"container_spec_cpu_shares":                        {gauge, ""},
	"container_spec_memory_limit_bytes":                {gauge, ""},
	"container_spec_memory_reservation_limit_bytes":    {gauge, ""},
	"container_spec_memory_swap_limit_bytes":           {gauge, ""},
	// Only where the kernel reports pressure (cgroup v2).
	"container_pressure_cpu_stalled_seconds_total":    {counter, ""},
	"container_pressure_cpu_waiting_seconds_total":    {counter, ""},
	"container_pressure_memory_stalled_seconds_total": {counter, ""},
	"container_pressure_memory_waiting_seconds_total": {counter, ""},
	"container_pressure_io_stalled_seconds_total":     {counter, ""},
	"container_pressure_io_waiting_seconds_total":     {counter, ""},
}

func TestMetricDescriptors(t *testing.T) {
	for _, tc := range []struct {
		v2, psi      bool
		wantPressure bool
	}{
		{v2: false, psi: false},
		{v2: false, psi: true}, // cgroup v1 has no pressure files
		{v2: true, psi: false},
		{v2: true, psi: true, wantPressure: true},
	} {
		t.Run(fmt.Sprintf("v2=%v psi=%v", tc.v2, tc.psi), func(t *testing.T) {
			set := newMetricSet(tc.v2, tc.psi)
			got := map[string]*runtimeapi.MetricDescriptor{}
			for _, d := range set.descs {
				if got[d.Name] != nil {
					t.Errorf("%s described twice", d.Name)
				}
				got[d.Name] = d
				want, ok := cadvisorMetrics[d.Name]
				if !ok {
					t.Errorf("%s is not a cAdvisor metric kubelet serves", d.Name)
					continue
				}
				keys := slices.Clone(metricLabels)
				if want.extra != "" {
					keys = append(keys, strings.Split(want.extra, ",")...)
				}
				if d.Help == "" || !slices.Equal(d.LabelKeys, keys) {
					t.Errorf("%s: help %q, label keys %v; want help and %v", d.Name, d.Help, d.LabelKeys, keys)
				}
			}
			for name := range cadvisorMetrics {
				pressure := strings.HasPrefix(name, "container_pressure_")
				if _, ok := got[name]; ok != (!pressure || tc.wantPressure) {
					t.Errorf("%s described: %v", name, ok)
				}
			}
			if set.pressure() != tc.wantPressure {
				t.Errorf("pressure() = %v", set.pressure())
			}
		})
	}
}

// metricKey names one series: its name and extra label values.
func metricKey(m *runtimeapi.Metric) string {
	return m.Name + "{" + strings.Join(m.LabelValues[len(metricLabels):], ",") + "}"
}

// checkMetrics checks what every metric must be (described, its labels
// matching the keys and starting with base, its type the descriptor's, one
// series per label set) and returns the values by metricKey.
func checkMetrics(t *testing.T, set *metricSet, base []string, ms []*runtimeapi.Metric) map[string]uint64 {
	t.Helper()
	descs := map[string]*runtimeapi.MetricDescriptor{}
	for _, d := range set.descs {
		descs[d.Name] = d
	}
	out := map[string]uint64{}
	for _, m := range ms {
		d := descs[m.Name]
		if d == nil {
			t.Errorf("%s is not described", m.Name)
			continue
		}
		if len(m.LabelValues) != len(d.LabelKeys) || !slices.Equal(m.LabelValues[:len(base)], base) {
			t.Errorf("%s: labels %q for keys %q, want base %q", m.Name, m.LabelValues, d.LabelKeys, base)
			continue
		}
		if m.MetricType != cadvisorMetrics[m.Name].typ || m.Timestamp == 0 || m.Value == nil {
			t.Errorf("%s: type %v, timestamp %d, value %v", m.Name, m.MetricType, m.Timestamp, m.Value)
		}
		k := metricKey(m)
		if _, dup := out[k]; dup {
			t.Errorf("two series %s", k)
		}
		out[k] = m.GetValue().GetValue()
	}
	return out
}

func TestContainerMetrics(t *testing.T) {
	at := time.Unix(1_800_000_000, 5)
	started := time.Unix(1_799_999_000, 0)
	base := []string{"web-0", "shop", "nginx", "c1", "nginx:1.27"}
	v1Sample := v1Usage
	v1Sample.at = at
	v1Sample.cpuNanos = 3_700_000_000
	v2Sample := v2Usage
	v2Sample.at = at
	shimSample := v1Sample
	shimSample.has = hasPids // a shim reports no /proc figures
	limits := &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 20000, CpuShares: 512,
		MemoryLimitInBytes: 64 << 20, MemorySwapLimitInBytes: 64 << 20}
	layer := &runtimeapi.FilesystemUsage{Timestamp: at.UnixNano(), UsedBytes: &runtimeapi.UInt64Value{Value: 40960}}
	fs := &layerFilesystem{device: "/dev/vda", at: at, capacity: 1 << 40, inodes: 1000, inodesFree: 600}

	v1Want := map[string]uint64{
		"container_last_seen{}":                                  1_800_000_000,
		"container_start_time_seconds{}":                         1_799_999_000,
		"container_cpu_usage_seconds_total{total}":               3,
		"container_cpu_user_seconds_total{}":                     0,
		"container_cpu_system_seconds_total{}":                   0,
		"container_cpu_cfs_periods_total{}":                      40,
		"container_cpu_cfs_throttled_periods_total{}":            4,
		"container_cpu_cfs_throttled_seconds_total{}":            2,
		"container_memory_cache{}":                               4096,
		"container_memory_rss{}":                                 2 << 20,
		"container_memory_kernel_usage{}":                        512 << 10,
		"container_memory_mapped_file{}":                         8192,
		"container_memory_swap{}":                                4096,
		"container_memory_failcnt{}":                             2,
		"container_memory_usage_bytes{}":                         10 << 20,
		"container_memory_max_usage_bytes{}":                     12 << 20,
		"container_memory_working_set_bytes{}":                   9 << 20,
		"container_memory_total_active_file_bytes{}":             65536,
		"container_memory_total_inactive_file_bytes{}":           1 << 20,
		"container_memory_failures_total{pgfault,container}":     70,
		"container_memory_failures_total{pgmajfault,container}":  2,
		"container_memory_failures_total{pgfault,hierarchy}":     77,
		"container_memory_failures_total{pgmajfault,hierarchy}":  3,
		"container_oom_events_total{}":                           1,
		"container_fs_reads_bytes_total{/dev/sda}":               4096,
		"container_fs_reads_total{/dev/sda}":                     1,
		"container_fs_writes_bytes_total{/dev/sda}":              8192,
		"container_fs_writes_total{/dev/sda}":                    2,
		"container_blkio_device_usage_total{/dev/sda,8,0,Read}":  4096,
		"container_blkio_device_usage_total{/dev/sda,8,0,Write}": 8192,
		"container_fs_reads_bytes_total{253:1}":                  512,
		"container_fs_reads_total{253:1}":                        1,
		"container_fs_writes_bytes_total{253:1}":                 0,
		"container_fs_writes_total{253:1}":                       0,
		"container_blkio_device_usage_total{253:1,253,1,Read}":   512,
		"container_blkio_device_usage_total{253:1,253,1,Write}":  0,
		"container_processes{}":                                  2,
		"container_file_descriptors{}":                           4,
		"container_sockets{}":                                    2,
		"container_threads{}":                                    4,
		"container_threads_max{}":                                0,
		"container_ulimits_soft{max_open_files}":                 1024,
		"container_spec_cpu_period{}":                            100000,
		"container_spec_cpu_quota{}":                             20000,
		"container_spec_cpu_shares{}":                            512,
		"container_spec_memory_limit_bytes{}":                    64 << 20,
		"container_spec_memory_reservation_limit_bytes{}":        0,
		"container_spec_memory_swap_limit_bytes{}":               64 << 20,
		"container_fs_usage_bytes{/dev/vda}":                     40960,
		"container_fs_limit_bytes{/dev/vda}":                     1 << 40,
		"container_fs_inodes_total{/dev/vda}":                    1000,
		"container_fs_inodes_free{/dev/vda}":                     600,
	}
	with := func(m map[string]uint64, edit func(map[string]uint64)) map[string]uint64 {
		out := maps.Clone(m)
		edit(out)
		return out
	}
	for _, tc := range []struct {
		desc    string
		set     *metricSet
		in      ctrMetricsIn
		want    map[string]uint64
		wantAll bool // every metric of the set but pressure is reported
	}{
		{desc: "cgroup v1, limits, layer measured", set: newMetricSet(false, true),
			in:   ctrMetricsIn{u: v1Sample, startedAt: started, res: limits, layer: layer, fs: fs},
			want: v1Want, wantAll: true},
		{desc: "no CPU quota: no CFS figures (as cAdvisor); no limits", set: newMetricSet(false, false),
			in: ctrMetricsIn{u: v1Sample, startedAt: started, layer: layer, fs: fs},
			want: with(v1Want, func(m map[string]uint64) {
				for _, k := range []string{"container_cpu_cfs_periods_total{}", "container_cpu_cfs_throttled_periods_total{}",
					"container_cpu_cfs_throttled_seconds_total{}", "container_spec_cpu_quota{}"} {
					delete(m, k)
				}
				m["container_spec_cpu_shares{}"] = 1024
				m["container_spec_memory_limit_bytes{}"] = 0
				m["container_spec_memory_swap_limit_bytes{}"] = 0
			})},
		{desc: "a shim's task: no /proc figures; layer not measured yet", set: newMetricSet(false, false),
			in: ctrMetricsIn{u: shimSample, startedAt: started, res: limits},
			want: with(v1Want, func(m map[string]uint64) {
				for _, k := range []string{"container_processes{}", "container_file_descriptors{}", "container_sockets{}",
					"container_ulimits_soft{max_open_files}", "container_fs_usage_bytes{/dev/vda}", "container_fs_limit_bytes{/dev/vda}",
					"container_fs_inodes_total{/dev/vda}", "container_fs_inodes_free{/dev/vda}"} {
					delete(m, k)
				}
			})},
		{desc: "layer measured, its filesystem not known", set: newMetricSet(false, false),
			in: ctrMetricsIn{u: v1Sample, startedAt: started, res: limits, layer: layer},
			want: with(v1Want, func(m map[string]uint64) {
				for _, k := range []string{"container_fs_usage_bytes{/dev/vda}", "container_fs_limit_bytes{/dev/vda}",
					"container_fs_inodes_total{/dev/vda}", "container_fs_inodes_free{/dev/vda}"} {
					delete(m, k)
				}
				m["container_fs_usage_bytes{}"] = 40960
			})},
		{desc: "cgroup v2 with pressure", set: newMetricSet(true, true),
			in: ctrMetricsIn{u: v2Sample, startedAt: started, layer: layer, fs: fs, res: &runtimeapi.LinuxContainerResources{
				CpuQuota: 50000, CpuShares: 2, MemoryLimitInBytes: 64 << 20, Unified: map[string]string{"memory.swap.max": "0", "memory.min": "1048576"}}},
			want: map[string]uint64{
				"container_last_seen{}": 1_800_000_000, "container_start_time_seconds{}": 1_799_999_000,
				"container_cpu_usage_seconds_total{total}": 0, "container_cpu_user_seconds_total{}": 0, "container_cpu_system_seconds_total{}": 0,
				"container_cpu_cfs_periods_total{}": 10, "container_cpu_cfs_throttled_periods_total{}": 1, "container_cpu_cfs_throttled_seconds_total{}": 0,
				"container_memory_cache{}": 4096, "container_memory_rss{}": 1 << 20, "container_memory_kernel_usage{}": 196608,
				"container_memory_mapped_file{}": 1024, "container_memory_swap{}": 4096, "container_memory_failcnt{}": 5,
				"container_memory_usage_bytes{}": 8 << 20, "container_memory_max_usage_bytes{}": 9 << 20, "container_memory_working_set_bytes{}": 8<<20 - 4096,
				"container_memory_total_active_file_bytes{}": 2048, "container_memory_total_inactive_file_bytes{}": 4096,
				"container_memory_failures_total{pgfault,container}": 12, "container_memory_failures_total{pgmajfault,container}": 1,
				"container_memory_failures_total{pgfault,hierarchy}": 12, "container_memory_failures_total{pgmajfault,hierarchy}": 1,
				"container_oom_events_total{}":             1,
				"container_fs_reads_bytes_total{/dev/sda}": 4096, "container_fs_reads_total{/dev/sda}": 1,
				"container_fs_writes_bytes_total{/dev/sda}": 8192, "container_fs_writes_total{/dev/sda}": 2,
				"container_blkio_device_usage_total{/dev/sda,8,0,Read}": 4096, "container_blkio_device_usage_total{/dev/sda,8,0,Write}": 8192,
				"container_processes{}": 1, "container_file_descriptors{}": 1, "container_sockets{}": 1,
				"container_threads{}": 2, "container_threads_max{}": 100, "container_ulimits_soft{max_open_files}": 1024,
				"container_pressure_cpu_waiting_seconds_total{}": 2, "container_pressure_cpu_stalled_seconds_total{}": 1,
				"container_pressure_memory_waiting_seconds_total{}": 0, "container_pressure_memory_stalled_seconds_total{}": 0,
				"container_pressure_io_waiting_seconds_total{}": 4, "container_pressure_io_stalled_seconds_total{}": 3,
				"container_spec_cpu_period{}": 100000, "container_spec_cpu_quota{}": 50000, "container_spec_cpu_shares{}": 2,
				"container_spec_memory_limit_bytes{}": 64 << 20, "container_spec_memory_reservation_limit_bytes{}": 1 << 20,
				"container_spec_memory_swap_limit_bytes{}": 0,
				"container_fs_usage_bytes{/dev/vda}":       40960, "container_fs_limit_bytes{/dev/vda}": 1 << 40,
				"container_fs_inodes_total{/dev/vda}": 1000, "container_fs_inodes_free{/dev/vda}": 600,
			}, wantAll: true},
		{desc: "pressure read but not described (a shim's v2 figures on a host without PSI)", set: newMetricSet(true, false),
			in: ctrMetricsIn{u: v2Sample, startedAt: started},
			want: map[string]uint64{
				"container_last_seen{}": 1_800_000_000, "container_start_time_seconds{}": 1_799_999_000,
				"container_cpu_usage_seconds_total{total}": 0, "container_cpu_user_seconds_total{}": 0, "container_cpu_system_seconds_total{}": 0,
				"container_memory_cache{}": 4096, "container_memory_rss{}": 1 << 20, "container_memory_kernel_usage{}": 196608,
				"container_memory_mapped_file{}": 1024, "container_memory_swap{}": 4096, "container_memory_failcnt{}": 5,
				"container_memory_usage_bytes{}": 8 << 20, "container_memory_max_usage_bytes{}": 9 << 20, "container_memory_working_set_bytes{}": 8<<20 - 4096,
				"container_memory_total_active_file_bytes{}": 2048, "container_memory_total_inactive_file_bytes{}": 4096,
				"container_memory_failures_total{pgfault,container}": 12, "container_memory_failures_total{pgmajfault,container}": 1,
				"container_memory_failures_total{pgfault,hierarchy}": 12, "container_memory_failures_total{pgmajfault,hierarchy}": 1,
				"container_oom_events_total{}":             1,
				"container_fs_reads_bytes_total{/dev/sda}": 4096, "container_fs_reads_total{/dev/sda}": 1,
				"container_fs_writes_bytes_total{/dev/sda}": 8192, "container_fs_writes_total{/dev/sda}": 2,
				"container_blkio_device_usage_total{/dev/sda,8,0,Read}": 4096, "container_blkio_device_usage_total{/dev/sda,8,0,Write}": 8192,
				"container_processes{}": 1, "container_file_descriptors{}": 1, "container_sockets{}": 1,
				"container_threads{}": 2, "container_threads_max{}": 100, "container_ulimits_soft{max_open_files}": 1024,
				"container_spec_cpu_period{}": 100000, "container_spec_cpu_shares{}": 1024,
				"container_spec_memory_limit_bytes{}": 0, "container_spec_memory_reservation_limit_bytes{}": 0,
				"container_spec_memory_swap_limit_bytes{}": 0,
			}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			tc.in.labels = base
			got := checkMetrics(t, tc.set, base, tc.set.containerMetrics(tc.in))
			if !reflect.DeepEqual(got, tc.want) {
				for k, v := range tc.want {
					if g, ok := got[k]; !ok || g != v {
						t.Errorf("%s = %d (reported: %v), want %d", k, g, ok, v)
					}
				}
				for k, v := range got {
					if _, ok := tc.want[k]; !ok {
						t.Errorf("unexpected %s = %d", k, v)
					}
				}
			}
			if tc.wantAll {
				// Every container metric described is reported
				// (network is the pod's).
				names := map[string]bool{}
				for k := range got {
					names[k[:strings.IndexByte(k, '{')]] = true
				}
				for _, d := range tc.set.descs {
					if !names[d.Name] && !strings.HasPrefix(d.Name, "container_network_") {
						t.Errorf("%s is described, not reported", d.Name)
					}
				}
			}
		})
	}
}

func TestSpecOf(t *testing.T) {
	for _, tc := range []struct {
		desc string
		res  *runtimeapi.LinuxContainerResources
		v2   bool
		want specFigures
	}{
		{desc: "nothing set: the kernel's defaults, no limits", res: nil, want: specFigures{cpuPeriod: 100000, cpuShares: 1024}},
		{desc: "v1 limits: memory+swap", res: &runtimeapi.LinuxContainerResources{CpuPeriod: 50000, CpuQuota: 25000, CpuShares: 2,
			MemoryLimitInBytes: 256 << 20, MemorySwapLimitInBytes: 512 << 20},
			want: specFigures{cpuPeriod: 50000, cpuQuota: 25000, cpuShares: 2, memLimit: 256 << 20, memSwapLimit: 512 << 20}},
		{desc: "v1: no quota is -1", res: &runtimeapi.LinuxContainerResources{CpuQuota: -1, MemorySwapLimitInBytes: -1},
			want: specFigures{cpuPeriod: 100000, cpuShares: 1024}},
		{desc: "v2: swap alone, as runc sets memory.swap.max", v2: true,
			res:  &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 256 << 20, MemorySwapLimitInBytes: 512 << 20},
			want: specFigures{cpuPeriod: 100000, cpuShares: 1024, memLimit: 256 << 20, memSwapLimit: 256 << 20}},
		{desc: "v2: swap equal to memory is no swap", v2: true,
			res:  &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 256 << 20, MemorySwapLimitInBytes: 256 << 20},
			want: specFigures{cpuPeriod: 100000, cpuShares: 1024, memLimit: 256 << 20}},
		{desc: "v2: kubelet's unified swap and memory QoS", v2: true,
			res: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 256 << 20, MemorySwapLimitInBytes: 256 << 20,
				Unified: map[string]string{"memory.swap.max": "1073741824", "memory.min": "134217728"}},
			want: specFigures{cpuPeriod: 100000, cpuShares: 1024, memLimit: 256 << 20, memSwapLimit: 1 << 30, memReservation: 128 << 20}},
		{desc: "v2: unified max is no limit", v2: true,
			res:  &runtimeapi.LinuxContainerResources{Unified: map[string]string{"memory.swap.max": "max"}},
			want: specFigures{cpuPeriod: 100000, cpuShares: 1024}},
		{desc: "v1 ignores unified", res: &runtimeapi.LinuxContainerResources{Unified: map[string]string{"memory.min": "5"}},
			want: specFigures{cpuPeriod: 100000, cpuShares: 1024}},
	} {
		if got := specFiguresOf(tc.res, tc.v2); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.desc, got, tc.want)
		}
	}
}

func TestPodNetMetrics(t *testing.T) {
	n := &podNet{usage: &runtimeapi.NetworkUsage{Timestamp: 42}, links: []Link{
		{Name: "eth0", RxBytes: 1, RxPackets: 2, RxErrors: 3, RxDropped: 4, TxBytes: 5, TxPackets: 6, TxErrors: 7, TxDropped: 8},
		{Name: "net1", RxBytes: 10},
	}}
	base := []string{"web-0", "shop", "", "pod1", ""}
	got := checkMetrics(t, newMetricSet(false, false), base, podNetMetrics(base, n))
	want := map[string]uint64{
		"container_network_receive_bytes_total{eth0}": 1, "container_network_receive_packets_total{eth0}": 2,
		"container_network_receive_errors_total{eth0}": 3, "container_network_receive_packets_dropped_total{eth0}": 4,
		"container_network_transmit_bytes_total{eth0}": 5, "container_network_transmit_packets_total{eth0}": 6,
		"container_network_transmit_errors_total{eth0}": 7, "container_network_transmit_packets_dropped_total{eth0}": 8,
		"container_network_receive_bytes_total{net1}": 10, "container_network_receive_packets_total{net1}": 0,
		"container_network_receive_errors_total{net1}": 0, "container_network_receive_packets_dropped_total{net1}": 0,
		"container_network_transmit_bytes_total{net1}": 0, "container_network_transmit_packets_total{net1}": 0,
		"container_network_transmit_errors_total{net1}": 0, "container_network_transmit_packets_dropped_total{net1}": 0,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("network metrics\n%v\nwant\n%v", got, want)
	}
}

// A shim's metrics (gVisor, VM handlers) carry the same figures.
func TestUsageOfShimMetrics(t *testing.T) {
	at := time.Unix(1_800_000_000, 0).UTC()
	for _, tc := range []struct {
		desc string
		data any
		want usage
	}{
		{desc: "cgroup v1", data: &v1.Metrics{
			CPU: &v1.CPUStat{Usage: &v1.CPUUsage{Total: 9e9, User: 6e9, Kernel: 3e9},
				Throttling: &v1.Throttle{Periods: 5, ThrottledPeriods: 2, ThrottledTime: 7e8}},
			Memory: &v1.MemoryStat{Usage: &v1.MemoryEntry{Usage: 100, Limit: 1 << 62, Max: 150, Failcnt: 3},
				Swap: &v1.MemoryEntry{Usage: 120}, Kernel: &v1.MemoryEntry{Usage: 9},
				TotalInactiveFile: 10, TotalActiveFile: 11, TotalRSS: 50, TotalCache: 30, TotalMappedFile: 8,
				PgFault: 4, PgMajFault: 1, TotalPgFault: 6, TotalPgMajFault: 2},
			MemoryOomControl: &v1.MemoryOomControl{OomKill: 1},
			Pids:             &v1.PidsStat{Current: 3, Limit: 64},
			Blkio: &v1.BlkIOStat{
				IoServiceBytesRecursive: []*v1.BlkIOEntry{{Op: "Read", Device: "/dev/vda", Major: 254, Value: 4096},
					{Op: "Write", Device: "/dev/vda", Major: 254, Value: 512}, {Op: "Total", Device: "/dev/vda", Major: 254, Value: 4608}},
				IoServicedRecursive: []*v1.BlkIOEntry{{Op: "Read", Device: "/dev/vda", Major: 254, Value: 2}, {Op: "Write", Device: "/dev/vda", Major: 254, Value: 1}},
			},
		}, want: usage{at: at, cpuNanos: 9e9, cpuUserNanos: 6e9, cpuSystemNanos: 3e9, cfsPeriods: 5, cfsThrottledPeriods: 2, cfsThrottledNanos: 7e8,
			memUsage: 100, memLimit: 0, memMaxUsage: 150, memFailcnt: 3, swap: 20, memKernel: 9, memWorkingSet: 90, memRSS: 50, memCache: 30,
			memMappedFile: 8, memActiveFile: 11, memInactiveFile: 10, pageFaults: 6, majorPageFaults: 2, ownPageFaults: 4, ownMajorPageFaults: 1,
			oomKills: 1, pids: 3, pidsLimit: 64, has: hasPids,
			io: []deviceIO{{name: "/dev/vda", major: 254, readBytes: 4096, writeBytes: 512, reads: 2, writes: 1}}}},
		{desc: "cgroup v2", data: &v2.Metrics{
			CPU: &v2.CPUStat{UsageUsec: 9e6, UserUsec: 6e6, SystemUsec: 3e6, NrPeriods: 5, NrThrottled: 2, ThrottledUsec: 700,
				PSI: &v2.PSIStats{Some: &v2.PSIData{Total: 40}, Full: &v2.PSIData{Total: 30}}},
			Memory: &v2.MemoryStat{Usage: 100, UsageLimit: 200, SwapUsage: 20, MaxUsage: 150, InactiveFile: 10, ActiveFile: 11,
				Anon: 50, File: 30, FileMapped: 8, KernelStack: 4, Slab: 5, Pgfault: 6, Pgmajfault: 2},
			MemoryEvents: &v2.MemoryEvents{Max: 3, OomKill: 1},
			Pids:         &v2.PidsStat{Current: 3},
			Io:           &v2.IOStat{Usage: []*v2.IOEntry{{Major: 8, Minor: 16, Rbytes: 4096, Wbytes: 512, Rios: 2, Wios: 1}}},
		}, want: usage{at: at, cpuNanos: 9e9, cpuUserNanos: 6e9, cpuSystemNanos: 3e9, cfsPeriods: 5, cfsThrottledPeriods: 2, cfsThrottledNanos: 7e5,
			memUsage: 100, memLimit: 200, memMaxUsage: 150, memFailcnt: 3, swap: 20, memKernel: 9, memWorkingSet: 90, memRSS: 50, memCache: 30,
			memMappedFile: 8, memActiveFile: 11, memInactiveFile: 10, pageFaults: 6, majorPageFaults: 2, ownPageFaults: 6, ownMajorPageFaults: 2,
			oomKills: 1, pids: 3, psi: [3]psiTotals{psiCPU: {some: 40, full: 30}}, has: hasPids | hasPSI,
			io: []deviceIO{{name: "8:16", major: 8, minor: 16, readBytes: 4096, writeBytes: 512, reads: 2, writes: 1}}}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			data, err := typeurl.MarshalAnyToProto(tc.data)
			if err != nil {
				t.Fatal(err)
			}
			got, err := usageOf("c1", &types.Metric{ID: "c1", Timestamp: timestamppb.New(at), Data: data})
			got.at = got.at.UTC()
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("usage %v\n%+v\nwant\n%+v", err, got, tc.want)
			}
		})
	}
}

// ListPodSandboxMetrics answers are built once per sample: the same pod
// entry (so its encoding, cri/codec.go) until the sample changes.
func TestPodMetricsBuiltOncePerSample(t *testing.T) {
	ctx := context.Background()
	f := newStatsFixture(t, 10*time.Second, time.Now().Add(-time.Second))
	f.src.pods[0].Config = &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "web-0", Namespace: "shop"}}
	f.src.setContainer("pod1", "c1", func(c *Container) {
		c.Config = &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "nginx"},
			Image: &runtimeapi.ImageSpec{Image: "sha256:abc", UserSpecifiedImage: "nginx:1.27"}}
	})
	f.s.layers.entries["c1"] = &layerUsage{usage: &runtimeapi.FilesystemUsage{Timestamp: 1, UsedBytes: &runtimeapi.UInt64Value{Value: 7}}, at: time.Now()}
	f.setCPU(t, 2_000_000_000)

	first, err := f.s.PodMetrics(ctx)
	if err != nil || len(first) != 1 || len(first[0].ContainerMetrics) != 1 || first[0].PodSandboxId != "pod1" {
		t.Fatalf("PodMetrics = %v, %v", first, err)
	}
	cm := first[0].ContainerMetrics[0]
	values := checkMetrics(t, f.s.metrics, []string{"web-0", "shop", "nginx", "c1", "nginx:1.27"}, cm.Metrics)
	if cm.ContainerId != "c1" || values["container_cpu_usage_seconds_total{total}"] != 2 || values["container_fs_usage_bytes{}"] != 7 {
		t.Errorf("container metrics %v", values)
	}
	again, _ := f.s.PodMetrics(ctx)
	if again[0] != first[0] {
		t.Error("metrics rebuilt without a new sample")
	}
	// New limits (UpdateContainerResources) show without a new sample.
	f.src.setContainer("pod1", "c1", func(c *Container) {
		c.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 1 << 30}
	})
	updated, _ := f.s.PodMetrics(ctx)
	if v := checkMetrics(t, f.s.metrics, cm.Metrics[0].LabelValues[:5], updated[0].ContainerMetrics[0].Metrics); v["container_spec_memory_limit_bytes{}"] != 1<<30 ||
		v["container_cpu_usage_seconds_total{total}"] != 2 {
		t.Errorf("after an update of resources: %v", v)
	}
	time.Sleep(5 * time.Millisecond)
	f.setCPU(t, 5_000_000_000)
	f.s.collect(nil)
	next, _ := f.s.PodMetrics(ctx)
	if next[0] == first[0] || next[0].ContainerMetrics[0] == cm {
		t.Fatal("metrics not rebuilt after a new sample")
	}
	if v := checkMetrics(t, f.s.metrics, cm.Metrics[0].LabelValues[:5], next[0].ContainerMetrics[0].Metrics); v["container_cpu_usage_seconds_total{total}"] != 5 {
		t.Errorf("after a new sample: %v", v)
	}
	f.src.removeContainer("pod1", "c1")
	f.s.Forget("c1")
	f.s.Forget("pod1")
	if len(f.s.builtCtrMetrics) != 0 || len(f.s.builtPodMetrics) != 0 {
		t.Errorf("forgotten metrics kept: %v %v", f.s.builtCtrMetrics, f.s.builtPodMetrics)
	}
}
