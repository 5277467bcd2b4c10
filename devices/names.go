package devices

import (
	"fmt"
	"strings"

	"tags.cncf.io/container-device-interface/pkg/parser"
)

// ParseQualifiedName splits a CDI name "vendor/class=name" and checks its
// syntax. Use it instead of the CDI parser on names from the wire: the
// parser of container-device-interface v1.1.0 panics on a one-character
// vendor or class ("a/b=c": it slices name[1:len(name)-1]). Such names are
// refused here before any CDI library code sees them; found by
// FuzzCDINames. The error is not classified: callers say which request
// field the name came from.
func ParseQualifiedName(n string) (vendor, class, name string, err error) {
	kind, _, _ := strings.Cut(n, "=")
	v, c, _ := strings.Cut(kind, "/")
	if len(v) == 1 || len(c) == 1 {
		return "", "", "", fmt.Errorf("CDI device %q: vendor and class must be at least 2 characters", n)
	}
	vendor, class, name, err = parser.ParseQualifiedName(n)
	if err != nil {
		return "", "", "", err
	}
	return vendor, class, name, nil
}
