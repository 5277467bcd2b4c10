// Package policy owns the node's image signature policies: policy files in
// the containers-policy.json vocabulary (the default file and one file per
// pod namespace, <dir>/<namespace>.json, as CRI-O reads them), their parsing
// with the public keys they name, the scope lookup per registry and
// repository, the signed-identity rules, the reload when a file changes, and
// the decision whether an image digest may run.
//
// It reads the policy files and the key files they name, and nothing else on
// the host; it fetches nothing itself (Evaluate calls the fetch function the
// caller gives it, once, and only when a requirement needs signatures) and
// keeps only parsed files. Verifying one signature is package signature's.
// It must not import package images (its parent) or know about pods beyond
// the namespace name that selects a file.
//
// # Format
//
//	{
//	  "default": [{"type": "reject"}],
//	  "transports": {
//	    "docker": {
//	      "registry.example.com/media": [{
//	        "type": "sigstoreSigned",
//	        "keyPath": "/etc/accel-cri/keys/media.pub",
//	        "signedIdentity": {"type": "matchRepository"}
//	      }],
//	      "registry.k8s.io/pause": [{"type": "insecureAcceptAnything"}]
//	    }
//	  }
//	}
//
// Requirements: insecureAcceptAnything, reject, sigstoreSigned (keyPath,
// keyPaths or keyData; signedIdentity matchRepoDigestOrExact (the default),
// matchRepository, exactReference, exactRepository, remapIdentity) and
// signedBy (GPG), which parses but is never satisfied: accel-cri does not
// verify GPG signatures and says so. Keyless sigstoreSigned (fulcio,
// rekorPublicKey*) is refused the same way. All requirements of a scope must
// be satisfied. A file that does not parse, or names a key that cannot be
// read, makes every decision under it a refusal that names the file: it
// fails closed.
package policy
