package podns

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestCheckpointJSON keeps the field names of the pod checkpoint (podMeta's
// "pinned" and "files") as they were written before the types moved here.
func TestCheckpointJSON(t *testing.T) {
	for _, tc := range []struct {
		desc string
		v    any
		want string
	}{
		{"no namespaces", Namespaces{}, `{}`},
		{"all namespaces", Namespaces{UTS: "/p/ns/uts", IPC: "/p/ns/ipc", User: "/p/ns/user"}, `{"uts":"/p/ns/uts","ipc":"/p/ns/ipc","user":"/p/ns/user"}`},
		{"files with shm", Files{Dir: "/p", HostnamePath: "/p/hostname", HostsPath: "/p/hosts", ResolvPath: "/p/resolv.conf", ShmPath: "/p/shm"},
			`{"dir":"/p","hostnamePath":"/p/hostname","hostsPath":"/p/hosts","resolvPath":"/p/resolv.conf","shmPath":"/p/shm"}`},
		{"files of a host ipc pod", Files{}, `{"dir":"","hostnamePath":"","hostsPath":"","resolvPath":""}`},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			b, err := json.Marshal(tc.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Errorf("%s, want %s", b, tc.want)
			}
			back := reflect.New(reflect.TypeOf(tc.v))
			if err := json.Unmarshal([]byte(tc.want), back.Interface()); err != nil || back.Elem().Interface() != tc.v {
				t.Errorf("read back %+v (%v), want %+v", back.Elem().Interface(), err, tc.v)
			}
		})
	}
}
