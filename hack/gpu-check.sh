#!/usr/bin/env bash
# gpu-check.sh: check accel-cri on a node with a real NVIDIA GPU, end to end.
#
#   hack/gpu-check.sh --image REF [--node NAME] [--kubeconfig FILE] [--config FILE] [--wait SECONDS] [--keep]
#   hack/gpu-check.sh manifests --namespace NS --image REF [--node NAME]
#
# Run it as root on a Kubernetes node whose kubelet uses accel-cri
# (--container-runtime-endpoint unix:///run/accel-cri/accel-cri.sock) with
# [devices.dra] on (docs/devices.md, "DRA"), with the NVIDIA driver
# installed. It downloads and builds nothing: it uses the accel-cri binary
# on PATH (or --accel-cri), nvidia-smi, kubectl and an image the node can
# pull (--image: one with a shell and an FFmpeg built with NVENC, from your
# registry). In order, it checks:
#
#   1. the driver: nvidia-smi lists the GPUs (UUID, PCI address, driver);
#   2. NVML discovery: `accel-cri devices` finds every one of them by UUID;
#   3. the ResourceSlice: gpu.accel-cri.io publishes every one of them on
#      the node, with its uuid, driverVersion and videoEncode attributes;
#   4. a claim: a pod with a ResourceClaimTemplate for
#      nvidia-gpu.accel-cri.io runs nvidia-smi (mounted from the host by
#      accel-cri) and sees exactly the GPU the scheduler allocated;
#   5. NVENC: a Job with its own claim transcodes a test pattern with
#      FFmpeg's h264_nvenc.
#
# The DeviceClasses of deploy/dra are applied when the cluster has none.
# Everything else lives in a namespace of its own, deleted at the end
# (--keep leaves it for a look). "manifests" prints the objects of steps 4
# and 5 for namespace NS, to read or to apply by hand.
#
# Exit status: 0 all checks passed; 1 a check failed (the step and what was
# seen are printed); 2 the node cannot be checked (no GPU, no driver, a
# tool missing: nothing was changed).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
image="" node="" kubeconfig="" config="" keep=0 accel_cri=accel-cri namespace="" mode=check
timeout=300s
wait_slices=120 # seconds for the ResourceSlices to show the GPUs

usage() { sed -n '4,5p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

if [[ ${1:-} == manifests ]]; then
	mode=manifests
	shift
fi
while [[ $# -gt 0 ]]; do
	case $1 in
	--image) image=${2:?}; shift 2 ;;
	--node) node=${2:?}; shift 2 ;;
	--kubeconfig) kubeconfig=${2:?}; shift 2 ;;
	--config) config=${2:?}; shift 2 ;;
	--accel-cri) accel_cri=${2:?}; shift 2 ;;
	--namespace) namespace=${2:?}; shift 2 ;;
	--wait) wait_slices=${2:?}; shift 2 ;;
	--keep) keep=1; shift ;;
	-h | --help) usage ;;
	*) echo "gpu-check: unknown argument $1" >&2; usage ;;
	esac
done
[[ -n $image ]] || { echo "gpu-check: --image is required (an image with a shell and FFmpeg with NVENC)" >&2; exit 2; }
[[ -n $node ]] || node=$(hostname | tr '[:upper:]' '[:lower:]')

# manifests prints the claim template, the nvidia-smi pod and the NVENC
# Job for namespace $1.
manifests() {
	local ns=$1
	cat <<EOF
apiVersion: resource.k8s.io/v1
kind: ResourceClaimTemplate
metadata:
  name: one-nvidia-gpu
  namespace: $ns
spec:
  spec:
    devices:
      requests:
      - name: gpu
        exactly:
          deviceClassName: nvidia-gpu.accel-cri.io
          count: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: nvidia-smi
  namespace: $ns
spec:
  restartPolicy: Never
  nodeSelector:
    kubernetes.io/hostname: $node
  resourceClaims:
  - name: gpu
    resourceClaimTemplateName: one-nvidia-gpu
  containers:
  - name: smi
    image: $image
    command: ["sh", "-c", "nvidia-smi -L && nvidia-smi --query-gpu=uuid --format=csv,noheader | sed 's/^/uuid=/'"]
    resources:
      claims:
      - name: gpu
---
apiVersion: batch/v1
kind: Job
metadata:
  name: nvenc
  namespace: $ns
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      nodeSelector:
        kubernetes.io/hostname: $node
      resourceClaims:
      - name: gpu
        resourceClaimTemplateName: one-nvidia-gpu
      securityContext:
        runAsUser: 1000
        runAsGroup: 1000
      containers:
      - name: ffmpeg
        image: $image
        command: ["sh", "-c", "ffmpeg -hide_banner -nostdin -f lavfi -i testsrc=duration=5:size=1280x720:rate=30 -c:v h264_nvenc -f mp4 -y /tmp/out.mp4 && ls -l /tmp/out.mp4 && echo encoder=h264_nvenc"]
        resources:
          claims:
          - name: gpu
EOF
}

if [[ $mode == manifests ]]; then
	[[ -n $namespace ]] || { echo "gpu-check: manifests needs --namespace" >&2; exit 2; }
	manifests "$namespace"
	exit 0
fi

step() { printf '\n== %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
cannot() { echo "CANNOT CHECK: $*" >&2; exit 2; }

for tool in nvidia-smi kubectl "$accel_cri"; do
	command -v "$tool" >/dev/null || cannot "$tool not found on PATH"
done
kc=(kubectl)
[[ -n $kubeconfig ]] && kc+=(--kubeconfig "$kubeconfig")
acri=("$accel_cri" devices)
[[ -n $config ]] && acri+=(--config "$config")

step "1. the NVIDIA driver"
smi=$(nvidia-smi --query-gpu=uuid,pci.bus_id,driver_version,name --format=csv,noheader) ||
	cannot "nvidia-smi failed: no NVIDIA GPU or driver on this node"
[[ -n $smi ]] || cannot "nvidia-smi lists no GPU"
echo "$smi"
mapfile -t uuids < <(cut -d, -f1 <<<"$smi" | tr -d ' ')
driver_version=$(head -1 <<<"$smi" | cut -d, -f3 | tr -d ' ')

step "2. NVML discovery (accel-cri devices)"
found=$("${acri[@]}") || fail "accel-cri devices: $found"
echo "$found"
for u in "${uuids[@]}"; do
	grep -q "accel-cri.io/gpu=$u" <<<"$found" || fail "accel-cri did not find GPU $u through NVML"
done
grep -q "NVIDIA driver $driver_version" <<<"$found" || fail "accel-cri reports another driver version than nvidia-smi ($driver_version)"

step "3. the ResourceSlice of gpu.accel-cri.io on node $node"
"${kc[@]}" get node "$node" >/dev/null || fail "no node $node in the cluster (--node)"
slices=""
deadline=$((SECONDS + wait_slices))
while :; do
	slices=$("${kc[@]}" get resourceslices --field-selector "spec.nodeName=$node,spec.driver=gpu.accel-cri.io" \
		-o jsonpath='{range .items[*].spec.devices[*]}{.name}{" uuid="}{.attributes.uuid.string}{" driverVersion="}{.attributes.driverVersion.version}{" videoEncode="}{.attributes.videoEncode.bool}{" taints="}{.taints}{"\n"}{end}')
	all=1
	for u in "${uuids[@]}"; do grep -q "uuid=$u " <<<"$slices" || all=0; done
	[[ $all == 1 || $SECONDS -ge $deadline ]] && break
	sleep 2
done
echo "$slices"
for u in "${uuids[@]}"; do
	line=$(grep "uuid=$u " <<<"$slices") || fail "GPU $u is not in the node's ResourceSlices (is [devices.dra] on?)"
	grep -q "videoEncode=true" <<<"$line" || fail "GPU $u: no videoEncode (NVML reports no NVENC)"
	grep -q "taints= *$" <<<"$line" || fail "GPU $u is tainted: $line"
done

step "4. a claim's pod runs nvidia-smi"
if ! "${kc[@]}" get deviceclass nvidia-gpu.accel-cri.io >/dev/null 2>&1; then
	"${kc[@]}" apply -f "$here/deploy/dra/deviceclasses.yaml"
fi
ns=gpu-check-$(date +%s)
"${kc[@]}" create namespace "$ns" >/dev/null
cleanup() {
	if [[ $keep == 1 ]]; then
		echo "kept namespace $ns"
	else
		"${kc[@]}" delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
	fi
}
trap cleanup EXIT
manifests "$ns" | "${kc[@]}" apply -f - >/dev/null
"${kc[@]}" -n "$ns" wait --for=jsonpath='{.status.phase}'=Succeeded pod/nvidia-smi --timeout=$timeout ||
	{ "${kc[@]}" -n "$ns" describe pod nvidia-smi; fail "the nvidia-smi pod did not succeed"; }
logs=$("${kc[@]}" -n "$ns" logs nvidia-smi)
echo "$logs"
seen=$(grep -c '^uuid=' <<<"$logs" || true)
[[ $seen == 1 ]] || fail "the pod sees $seen GPUs, want exactly its one"
claim=$("${kc[@]}" -n "$ns" get pod nvidia-smi -o jsonpath='{.status.resourceClaimStatuses[0].resourceClaimName}')
device=$("${kc[@]}" -n "$ns" get resourceclaim "$claim" -o jsonpath='{.status.allocation.devices.results[0].device}')
want=$(grep "^$device " <<<"$slices" | sed 's/.* uuid=\([^ ]*\) .*/\1/')
grep -q "^uuid=$want$" <<<"$logs" || fail "the pod sees $(grep '^uuid=' <<<"$logs"), but its claim $claim was allocated $device ($want)"

step "5. NVENC: an FFmpeg Job with its own claim"
"${kc[@]}" -n "$ns" wait --for=condition=complete job/nvenc --timeout=$timeout ||
	{ "${kc[@]}" -n "$ns" logs job/nvenc --tail=40 || true; fail "the NVENC Job did not complete"; }
"${kc[@]}" -n "$ns" logs job/nvenc --tail=5
"${kc[@]}" -n "$ns" logs job/nvenc | grep -q '^encoder=h264_nvenc$' || fail "the Job did not report encoder=h264_nvenc"

printf '\nPASS: %d GPU(s) found by NVML, published by DRA, given to a claim and encoding with NVENC on node %s\n' "${#uuids[@]}" "$node"
