package policy

import (
	"strings"

	"github.com/distribution/reference"
)

// DefaultScope names the policy's top-level "default" in decisions.
const DefaultScope = "default"

// Requirements returns the requirements for an image pulled by ref and the
// scope they came from, the most specific first, as containers/image looks
// them up for the docker transport: the reference itself (with tag or
// digest), its repository, each parent namespace, the registry, the
// "*.domain" wildcards of the registry's host, the transport's "" scope, and
// the policy's default.
func (p *Policy) Requirements(ref reference.Named) (scope string, reqs []Requirement) {
	for _, s := range scopesOf(ref) {
		if r, ok := p.Docker[s]; ok {
			return s, r
		}
	}
	if r, ok := p.Docker[""]; ok {
		return `transports.docker[""]`, r
	}
	return DefaultScope, p.Default
}

// scopesOf lists the scopes that may name ref, the most specific first.
func scopesOf(ref reference.Named) []string {
	var scopes []string
	if !reference.IsNameOnly(ref) {
		scopes = append(scopes, ref.String())
	}
	name := ref.Name()
	for {
		scopes = append(scopes, name)
		i := strings.LastIndexByte(name, '/')
		if i < 0 {
			break
		}
		name = name[:i]
	}
	// name is now the registry. Wildcards match the host's parent domains
	// ("*.example.com" for "r.example.com"); a registry with a port has
	// none, as in containers/image.
	host := name
	if !strings.Contains(host, ":") {
		for {
			i := strings.IndexByte(host, '.')
			if i < 0 {
				break
			}
			host = host[i+1:]
			scopes = append(scopes, "*."+host)
		}
	}
	return scopes
}

// AcceptsAnything reports whether every requirement for ref (the policy's
// default when ref is nil) is insecureAcceptAnything: the image needs no
// signature, and no digest to look one up by.
func (p *Policy) AcceptsAnything(ref reference.Named) bool {
	reqs := p.Default
	if ref != nil {
		_, reqs = p.Requirements(ref)
	}
	for _, r := range reqs {
		if r.Type != TypeAcceptAnything {
			return false
		}
	}
	return true
}
