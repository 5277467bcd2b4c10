package podnet

import (
	"context"
	"errors"
	"fmt"
	"time"

	gocni "github.com/containerd/go-cni"
	"github.com/containernetworking/cni/libcni"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
)

// SetupPod attaches the pod whose network namespace is netnsPath to every
// loaded CNI network (CNI ADD) and returns the IPs of its eth0 interface,
// IPv4 first. When anything fails after ADD started, what was made is torn
// down again (CNI DEL) before the error is returned.
func (n *Network) SetupPod(ctx context.Context, podID, netnsPath string, cfg *runtimeapi.PodSandboxConfig) (IPs, error) {
	if err := n.loaded(); err != nil {
		return IPs{}, fmt.Errorf("setup network of pod %s: %w", podID, err)
	}
	args, err := podCNIArgs(podID, cfg, true)
	if err != nil {
		return IPs{}, fmt.Errorf("setup network of pod %s: %w", podID, err)
	}
	result, err := n.cni.Setup(ctx, podID, netnsPath, args.namespaceOpts()...)
	if err == nil {
		var pn IPs
		pn, err = podIPs(result)
		if err == nil {
			return pn, nil
		}
	}
	err = notReady(err)
	// Undo with a context of its own: ctx may be what ended the ADD.
	cleanupCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cniCleanupTimeout)
	defer cancel()
	if derr := n.del(cleanupCtx, podID, netnsPath, args); derr != nil {
		klog.ErrorS(derr, "Tearing down the network of a pod whose setup failed", "pod", podID)
		return IPs{}, fmt.Errorf("setup network of pod %s: %w (undoing it: %v)", podID, err, derr)
	}
	return IPs{}, fmt.Errorf("setup network of pod %s: %w", podID, err)
}

// TeardownPod detaches the pod from every loaded CNI network (CNI DEL): it
// releases the pod's IPs and removes its port mappings. It succeeds when the
// network namespace is already gone or ADD never happened, so a stop can be
// retried.
func (n *Network) TeardownPod(ctx context.Context, podID, netnsPath string, cfg *runtimeapi.PodSandboxConfig) error {
	if err := n.loaded(); err != nil {
		return fmt.Errorf("teardown network of pod %s: %w", podID, err)
	}
	// Bad bandwidth annotations made the setup fail; they must not stop the
	// teardown, and DEL of the bandwidth plugin does not need the rates.
	args, err := podCNIArgs(podID, cfg, false)
	if err != nil {
		return fmt.Errorf("teardown network of pod %s: %w", podID, err)
	}
	path, err := liveNetNS(netnsPath)
	if err != nil {
		return fmt.Errorf("teardown network of pod %s: %w", podID, err)
	}
	if err := n.del(ctx, podID, path, args); err != nil {
		return fmt.Errorf("teardown network of pod %s: %w", podID, err)
	}
	return nil
}

// cniCleanupTimeout bounds the DEL that undoes a failed ADD.
const cniCleanupTimeout = 2 * time.Minute

// loaded is nil when a network config is loaded.
func (n *Network) loaded() error {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.loadErr
}

// notReady turns go-cni's "no config" error into ErrNetworkNotReady.
func notReady(err error) error {
	if err != nil && gocni.IsCNINotInitialized(err) && !errors.Is(err, ErrNetworkNotReady) {
		return fmt.Errorf("%w: %w", ErrNetworkNotReady, err)
	}
	return err
}

// del runs CNI DEL for all networks. If the list DEL fails (a plugin of the
// list fails or is missing), every plugin of every network is asked on its
// own, in reverse order, so the plugins that work still release what they
// hold (IPs, port mappings). The list's error is returned unless every
// plugin then succeeded on its own.
func (n *Network) del(ctx context.Context, podID, netnsPath string, args cniArgs) error {
	err := notReady(n.cni.Remove(ctx, podID, netnsPath, args.namespaceOpts()...))
	if err == nil || errors.Is(err, ErrNetworkNotReady) {
		return err
	}
	if perr := n.delEachPlugin(ctx, podID, netnsPath, args); perr == nil {
		klog.InfoS("CNI DEL of the network list failed but each plugin alone succeeded", "pod", podID, "listError", err)
		return nil
	}
	return err
}

// delEachPlugin runs DEL plugin by plugin, going on after failures, and
// returns them joined.
func (n *Network) delEachPlugin(ctx context.Context, podID, netnsPath string, args cniArgs) error {
	conf := n.cni.GetConfig()
	cniConf := libcni.NewCNIConfig(conf.PluginDirs, nil)
	var errs []error
	for _, network := range conf.Networks {
		if network.Config == nil {
			continue
		}
		list, err := libcni.ConfListFromBytes([]byte(network.Config.Source))
		if err != nil {
			errs = append(errs, fmt.Errorf("network %s: %w", network.Config.Name, err))
			continue
		}
		rt := args.runtimeConf(podID, netnsPath, network.IFName)
		for i := len(list.Plugins) - 1; i >= 0; i-- {
			one := &libcni.NetworkConfigList{
				Name:       list.Name,
				CNIVersion: list.CNIVersion,
				Plugins:    []*libcni.PluginConfig{list.Plugins[i]},
				Bytes:      list.Bytes,
			}
			if err := cniConf.DelNetworkList(ctx, one, rt); err != nil {
				klog.ErrorS(err, "CNI DEL of one plugin", "pod", podID, "network", list.Name, "plugin", list.Plugins[i].Network.Type)
				errs = append(errs, fmt.Errorf("network %s: %w", list.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}
