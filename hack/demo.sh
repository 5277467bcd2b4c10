#!/usr/bin/env bash
# Runs accel-cri with a demo, self-contained under $DEMO_DIR: a local registry
# with the locally built test images, accel-cri with its managed containerd,
# and crictl talking to it. Run by `make run` (after deps and build).
#
#   DEMO_KEEP=1 (default when stdin is a terminal): keep serving after the demo
#               until ^C, so you can point crictl or kubelet at the socket.
#   DEMO_KEEP=0: stop and clean up right after the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:/usr/local/bin:$PATH

DEMO_DIR=${DEMO_DIR:-/tmp/accel-cri-demo}
PORT=${DEMO_REGISTRY_PORT:-5050}
REG=127.0.0.1:$PORT
SOCK=$DEMO_DIR/accel-cri.sock
if [ -z "${DEMO_KEEP:-}" ]; then
  if [ -t 0 ]; then DEMO_KEEP=1; else DEMO_KEEP=0; fi
fi

pids=()
cleanup() {
  set +e
  if [ -n "${POD:-}" ] && [ -S "$SOCK" ]; then
    command crictl --config "$DEMO_DIR/crictl.yaml" stopp "$POD" >/dev/null 2>&1
    command crictl --config "$DEMO_DIR/crictl.yaml" rmp "$POD" >/dev/null 2>&1
  fi
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
  grep -o " $DEMO_DIR/[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l
  for h in /sys/fs/cgroup/*/accel-cri-demo /sys/fs/cgroup/accel-cri-demo; do [ -d "$h" ] && rmdir "$h" 2>/dev/null; done
  ip link del acri-demo0 2>/dev/null
  rm -rf "$DEMO_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if curl -fsS -o /dev/null "http://$REG/v2/" 2>/dev/null; then
  echo "port $PORT is in use; set DEMO_REGISTRY_PORT" >&2
  exit 1
fi
# A leftover from an interrupted run is ours to remove.
rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR/registry" "$DEMO_DIR/net.d"

say "Local registry on $REG (Debian docker-registry)"
cat >"$DEMO_DIR/registry.yml" <<EOF
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $DEMO_DIR/registry}
  delete: {enabled: true}
http: {addr: $REG}
EOF
docker-registry serve "$DEMO_DIR/registry.yml" >"$DEMO_DIR/registry.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fsS -o /dev/null "http://$REG/v2/" && break; sleep 0.1; done

say "Building and pushing the test images (busybox, pause) with go-containerregistry"
go run ./hack/pushimages --registry "$REG"

# The demo makes its bridge with the gateway address itself: the bridge
# plugin's isGateway would switch on net.ipv4.ip_forward for the whole host.
ip link add acri-demo0 type bridge
ip addr add 10.250.77.1/24 dev acri-demo0
ip link set acri-demo0 up
cat >"$DEMO_DIR/net.d/10-accel-cri-demo.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "accel-cri-demo", "plugins": [
  {"type": "bridge", "bridge": "acri-demo0", "isGateway": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.250.77.0/24", "gateway": "10.250.77.1"}]], "dataDir": "$DEMO_DIR/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
EOF

say "Starting accel-cri (managed containerd) on $SOCK"
bin/accel-cri --socket "$SOCK" --root "$DEMO_DIR/root" --state "$DEMO_DIR/state" \
  --cni-conf-dir "$DEMO_DIR/net.d" --sandbox-image "$REG/library/pause:3.10" \
  >"$DEMO_DIR/accel-cri.log" 2>&1 &
pids+=($!)
cat >"$DEMO_DIR/crictl.yaml" <<EOF
runtime-endpoint: unix://$SOCK
image-endpoint: unix://$SOCK
timeout: 60
EOF
crictl() { command crictl --config "$DEMO_DIR/crictl.yaml" "$@"; }
for _ in $(seq 300); do crictl version >/dev/null 2>&1 && break; sleep 0.1; done

say "crictl version"
crictl version
say "crictl info (runtime conditions)"
crictl info | head -30
say "crictl pull $REG/library/busybox:latest"
crictl pull "$REG/library/busybox:latest"
say "crictl images"
crictl images
say "crictl imagefsinfo"
crictl imagefsinfo

say "A demo pod: pause sandbox + a busybox container, networked by CNI"
mkdir -p "$DEMO_DIR/logs"
cat >"$DEMO_DIR/pod.json" <<EOF
{"metadata": {"name": "demo", "namespace": "default", "uid": "demo-uid-1"},
 "hostname": "demo", "log_directory": "$DEMO_DIR/logs",
 "dns_config": {"servers": ["10.96.0.10"], "searches": ["default.svc.cluster.local"]},
 "linux": {"cgroup_parent": "/accel-cri-demo"}}
EOF
cat >"$DEMO_DIR/container.json" <<EOF
{"metadata": {"name": "hello"}, "image": {"image": "$REG/library/busybox:latest"},
 "command": ["sh", "-c", "echo hello from \$(hostname), ip \$(ip -4 -o addr show eth0 | awk '{print \$4}'); cat /etc/resolv.conf; sleep 3600"],
 "log_path": "hello.log",
 "linux": {"security_context": {"run_as_user": {"value": 1000}}}}
EOF
POD=$(crictl runp "$DEMO_DIR/pod.json")
CTR=$(crictl create "$POD" "$DEMO_DIR/container.json" "$DEMO_DIR/pod.json")
crictl start "$CTR" >/dev/null
sleep 1
crictl pods
crictl ps
say "crictl logs hello"
crictl logs "$CTR"
say "crictl exec: id inside the container"
crictl exec "$CTR" id

if [ "$DEMO_KEEP" = 1 ]; then
  say "accel-cri is serving on unix://$SOCK (log: $DEMO_DIR/accel-cri.log)."
  echo "Try: crictl --config $DEMO_DIR/crictl.yaml images    (^C stops accel-cri)"
  wait "${pids[1]}"
else
  say "Demo done; removing the pod and stopping."
  crictl stopp "$POD" >/dev/null && crictl rmp "$POD" >/dev/null
fi
