package preflight

import (
	"context"
	"fmt"

	"github.com/accel-cri/accel-cri/images/policy"
)

// checkSignaturePolicy parses every signature policy file accel-cri would
// use, with the keys they name: the default file (signature_policy) and each
// <namespace>.json of signature_policy_dir. A file that cannot be used
// refuses every pull under it (it fails closed), so it is a FAIL; a file no
// pull would use (not a namespace's name) is a WARN.
func checkSignaturePolicy(_ context.Context, c *checker) []Result {
	const item = "signature policy"
	store := policy.NewStore(c.cfg.SignaturePolicy, c.cfg.SignaturePolicyDir)
	if !store.Enabled() {
		return []Result{ok(item, "off (signature_policy and signature_policy_dir unset): images are not verified")}
	}
	checks, err := store.Check()
	var out []Result
	if err != nil {
		out = append(out, fail(item, "create the directory or fix signature_policy_dir", "%v", err))
	}
	for _, fc := range checks {
		what := "default policy"
		if fc.Namespace != "" {
			what = fmt.Sprintf("namespace %q", fc.Namespace)
		}
		switch {
		case fc.Unused:
			out = append(out, warn(item, "rename it <namespace>.json or remove it", "%v", fc.Err))
		case fc.Err != nil:
			out = append(out, fail(item, "fix the file: pulls under it are refused with SignatureValidationFailed (docs/security.md)", "%s: %v", what, fc.Err))
		default:
			out = append(out, ok(item, "%s %s: %d docker scope(s)", what, fc.File, fc.Scopes))
		}
	}
	if len(out) == 0 {
		out = append(out, ok(item, "no default policy and no namespace file in %s: images are not verified yet", c.cfg.SignaturePolicyDir))
	}
	return out
}
