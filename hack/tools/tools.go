//go:build tools

// Package tools pins the kubelet that the kubelet end-to-end suite
// (test/e2e/kubelet) runs against accel-cri. hack/build-kubelet.sh builds it.
package tools

import _ "k8s.io/kubernetes/cmd/kubelet"
