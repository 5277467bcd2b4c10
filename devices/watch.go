package devices

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
	"k8s.io/klog/v2"
)

// watchDirs are the directories whose changes mean devices came or went:
// the dev root and its dri and nvidia-caps subdirectories, and the sysfs
// class directories discovery reads. Missing ones are skipped.
func (m *Manager) watchDirs() []string {
	var out []string
	for _, d := range []string{
		m.o.devRoot,
		filepath.Join(m.o.devRoot, "dri"),
		filepath.Join(m.o.sysfsRoot, "class", "drm"),
		filepath.Join(m.o.sysfsRoot, "class", "fpga_region"),
		filepath.Join(m.o.sysfsRoot, "class", "fpga"),
		filepath.Join(m.o.sysfsRoot, "bus", "dfl", "devices"),
	} {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			out = append(out, d)
		}
	}
	return out
}

// watch rediscovers after a burst of events in the watched directories has
// settled. (sysfs sends no inotify events for hotplug; /dev does, as udev
// creates and removes nodes, which is what devices vanishing looks like.)
func (m *Manager) watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch devices: %w", err)
	}
	defer w.Close()
	for _, d := range m.watchDirs() {
		if err := w.Add(d); err != nil {
			klog.InfoS("Cannot watch device directory", "dir", d, "err", err)
		}
	}
	var settle <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Has(fsnotify.Create) && filepath.Base(ev.Name) == "dri" {
				_ = w.Add(ev.Name)
			}
			settle = time.After(m.o.settle)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			klog.ErrorS(err, "Device watch")
		case <-settle:
			settle = nil
			if err := m.Refresh(); err != nil {
				klog.ErrorS(err, "Device discovery")
			}
		}
	}
}
