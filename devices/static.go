package devices

import (
	"fmt"
	"path/filepath"

	"tags.cncf.io/container-device-interface/pkg/parser"
)

// discoverStatic checks the devices named in the config: each path must be
// a character or block device under the dev root. A missing one is an error
// the caller logs; the other devices are still published.
func discoverStatic(o *options) ([]Device, []error) {
	var out []Device
	var errs []error
	for _, s := range o.static {
		if err := parser.ValidateDeviceName(s.Name); err != nil {
			errs = append(errs, fmt.Errorf("static device %q: %w", s.Name, err))
			continue
		}
		n, err := statNode(o.devRoot, filepath.Clean(s.Path))
		if err != nil {
			errs = append(errs, fmt.Errorf("static device %q: %w", s.Name, err))
			continue
		}
		out = append(out, Device{Class: ClassStatic, Name: s.Name, Vendor: "static", Nodes: []Node{n}, Health: Healthy})
	}
	return out, errs
}
