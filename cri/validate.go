package cri

import (
	"net/netip"
	"strings"
)

// validateCIDRs checks a comma-separated list of CIDRs, the form kubelet uses
// for dual-stack pod CIDRs.
func validateCIDRs(list string) error {
	for _, c := range strings.Split(list, ",") {
		c = strings.TrimSpace(c)
		if c == "" {
			return invalid("pod CIDR %q: %v", list, errEmptyCIDR)
		}
		if _, err := netip.ParsePrefix(c); err != nil {
			return invalid("pod CIDR %q: %v", c, err)
		}
	}
	return nil
}
