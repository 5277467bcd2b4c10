package main

import (
	"context"
	"fmt"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/accel-cri/accel-cri/config"
	"github.com/accel-cri/accel-cri/devices"
	"github.com/accel-cri/accel-cri/dra"
)

// startDRA starts the DRA kubelet plugin when [devices.dra] has a
// kubeconfig (config validation made sure discovery is on then). The
// returned stop unregisters the drivers; it is a no-op when DRA is off.
func startDRA(ctx context.Context, c config.DevicesConfig, mgr *devices.Manager) (stop func(), err error) {
	if !c.DRA.Enabled() || mgr == nil {
		return func() {}, nil
	}
	rc, err := clientcmd.BuildConfigFromFlags("", c.DRA.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("devices.dra.kubeconfig: %w", err)
	}
	rc.UserAgent = "accel-cri-dra"
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("devices.dra.kubeconfig: %w", err)
	}
	p, err := dra.StartPlugin(ctx, dra.PluginConfig{
		NodeName:    c.DRA.NodeName,
		Client:      client,
		PluginsDir:  c.DRA.PluginsDir,
		RegistryDir: c.DRA.RegistryDir,
		Shares:      c.Replicas,
		SysfsRoot:   c.SysfsRoot,
	}, mgr)
	if err != nil {
		return nil, err
	}
	klog.InfoS("DRA kubelet plugin running", "node", c.DRA.NodeName, "drivers", dra.Drivers, "server", rc.Host)
	return p.Stop, nil
}
