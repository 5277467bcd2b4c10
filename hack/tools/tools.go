//go:build tools

// Package tools pins the Kubernetes components the end-to-end suites run
// against accel-cri: the kubelet of test/e2e/kubelet (hack/build-kubelet.sh
// builds it) and the control plane of test/e2e/cluster and `make cluster`
// (hack/build-k8s.sh builds it). etcd is the server Kubernetes itself pins.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
