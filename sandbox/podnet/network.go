package podnet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	gocni "github.com/containerd/go-cni"
	"github.com/fsnotify/fsnotify"
	"k8s.io/klog/v2"
)

// ErrNetworkNotReady reports that no usable CNI configuration is loaded.
var ErrNetworkNotReady = errors.New("cni config not initialized")

// Network is the node's pod network: the CNI configuration from the conf
// dir, reloaded when files in that directory change.
type Network struct {
	cni     gocni.CNI
	confDir string

	mu      sync.RWMutex
	loadErr error

	watcher *fsnotify.Watcher
	done    chan struct{}
}

// New loads the CNI config from confDir (creating the directory if it
// is missing, so it can be watched) and watches it for changes until Close.
func New(confDir string, binDirs []string, opts ...Option) (*Network, error) {
	if err := os.MkdirAll(confDir, 0o755); err != nil {
		return nil, fmt.Errorf("cni conf dir: %w", err)
	}
	c, err := gocni.New(gocni.WithPluginConfDir(confDir), gocni.WithPluginDir(binDirs), gocni.WithMinNetworkCount(2))
	if err != nil {
		return nil, fmt.Errorf("cni: %w", err)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("cni: watch %s: %w", confDir, err)
	}
	if err := w.Add(confDir); err != nil {
		w.Close()
		return nil, fmt.Errorf("cni: watch %s: %w", confDir, err)
	}
	n := &Network{cni: observeCNI(c, opts), confDir: confDir, watcher: w, done: make(chan struct{})}
	n.reload()
	go n.watch()
	return n, nil
}

func (n *Network) reload() {
	err := n.cni.Load(gocni.WithLoNetwork, gocni.WithDefaultConf)
	if err != nil {
		err = fmt.Errorf("%w: no network config loaded from %s: %v", ErrNetworkNotReady, n.confDir, err)
	}
	n.mu.Lock()
	changed := (err == nil) != (n.loadErr == nil)
	n.loadErr = err
	n.mu.Unlock()
	if changed || err == nil {
		if err != nil {
			klog.InfoS("Pod network is not ready", "reason", err)
		} else {
			klog.InfoS("Pod network config loaded", "confDir", n.confDir)
		}
	}
}

func (n *Network) watch() {
	defer close(n.done)
	for {
		select {
		case ev, ok := <-n.watcher.Events:
			if !ok {
				return
			}
			if ev.Op&(fsnotify.Create|fsnotify.Write|fsnotify.Remove|fsnotify.Rename) != 0 {
				n.reload()
			}
		case err, ok := <-n.watcher.Errors:
			if !ok {
				return
			}
			klog.ErrorS(err, "Watching CNI conf dir", "dir", n.confDir)
		}
	}
}

// Ready is nil when a network config is loaded and its plugins report ready
// (CNI STATUS, for plugins that implement it).
func (n *Network) Ready(ctx context.Context) error {
	n.mu.RLock()
	err := n.loadErr
	n.mu.RUnlock()
	if err != nil {
		return err
	}
	if err := n.cni.Status(); err != nil {
		return fmt.Errorf("%w: %v", ErrNetworkNotReady, err)
	}
	return nil
}

// Close stops watching the conf dir.
func (n *Network) Close() error {
	err := n.watcher.Close()
	<-n.done
	return err
}
