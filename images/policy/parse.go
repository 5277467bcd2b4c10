package policy

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/distribution/reference"

	"github.com/accel-cri/accel-cri/images/signature"
	"github.com/accel-cri/accel-cri/internal/strictjson"
)

// ErrInvalid marks a policy file that cannot be used: it does not parse, it
// breaks the format's rules, or a key it names cannot be read.
var ErrInvalid = errors.New("invalid signature policy")

// maxPolicySize bounds a policy file; real ones are a few KiB.
const maxPolicySize = 1 << 20

// maxKeys bounds the keys one requirement may name.
const maxKeys = 64

// Requirement types of containers-policy.json.
const (
	TypeAcceptAnything = "insecureAcceptAnything"
	TypeReject         = "reject"
	TypeSigstoreSigned = "sigstoreSigned"
	TypeSignedBy       = "signedBy"
)

// Signed-identity rules of containers-policy.json.
const (
	IdentityMatchRepoDigestOrExact = "matchRepoDigestOrExact"
	IdentityMatchRepository        = "matchRepository"
	IdentityExactReference         = "exactReference"
	IdentityExactRepository        = "exactRepository"
	IdentityRemap                  = "remapIdentity"
)

// Policy is one parsed policy file.
type Policy struct {
	// File is the path it was read from ("" for one parsed from bytes).
	File string
	// Default applies to an image no scope matches.
	Default []Requirement
	// Docker holds the requirements per scope of the "docker" transport
	// (registry, repository or a parent namespace of it, a reference with
	// tag or digest, "*.domain", and "" for the transport's default).
	Docker map[string][]Requirement
	// keyFiles are the key files the policy read, for the reload check.
	keyFiles []string
}

// Requirement is one requirement of a scope.
type Requirement struct {
	Type string
	// Keys of a sigstoreSigned requirement: a signature made with any of
	// them satisfies it.
	Keys []*signature.PublicKey
	// Identity is the signedIdentity rule of a sigstoreSigned requirement.
	Identity IdentityRule
	// Unsupported says why a requirement can never be satisfied here
	// (signedBy, keyless sigstoreSigned); "" otherwise.
	Unsupported string
}

// IdentityRule is a signedIdentity: how the identity a signature claims must
// relate to the reference the image is pulled by.
type IdentityRule struct {
	Type string
	// Reference of exactReference, repository of exactRepository.
	Reference string
	// Prefix and SignedPrefix of remapIdentity.
	Prefix, SignedPrefix string
}

// ParseFile reads and parses the policy file at path, with the key files it
// names. Errors wrap ErrInvalid and name the file.
func ParseFile(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: policy file %s: %w", ErrInvalid, path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPolicySize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: policy file %s: %w", ErrInvalid, path, err)
	}
	if len(data) > maxPolicySize {
		return nil, fmt.Errorf("%w: policy file %s is larger than %d bytes", ErrInvalid, path, maxPolicySize)
	}
	p, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("policy file %s: %w", path, err)
	}
	p.File = path
	return p, nil
}

// rawPolicy is the file's top level.
type rawPolicy struct {
	Default    []json.RawMessage                       `json:"default"`
	Transports map[string]map[string][]json.RawMessage `json:"transports"`
}

// Parse parses a policy from its JSON. Unknown fields are errors, as in
// containers/image, so a typo cannot weaken a policy. Errors wrap ErrInvalid.
func Parse(data []byte) (*Policy, error) {
	var raw rawPolicy
	if err := strictjson.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if raw.Default == nil {
		return nil, fmt.Errorf("%w: \"default\" is missing (it applies to images no scope names)", ErrInvalid)
	}
	p := &Policy{Docker: map[string][]Requirement{}}
	var err error
	if p.Default, p.keyFiles, err = parseRequirements(raw.Default, p.keyFiles); err != nil {
		return nil, fmt.Errorf("%w: default: %w", ErrInvalid, err)
	}
	for transport, scopes := range raw.Transports {
		switch transport {
		case "docker":
		case "atomic", "containers-storage", "dir", "docker-archive", "docker-daemon", "oci", "oci-archive", "sif", "tarball":
			// Other transports of containers/image never reach a CRI pull;
			// their scopes are checked for shape only.
		default:
			return nil, fmt.Errorf("%w: unknown transport %q", ErrInvalid, transport)
		}
		for _, scope := range sortedKeys(scopes) {
			if transport == "docker" {
				if err := validateDockerScope(scope); err != nil {
					return nil, fmt.Errorf("%w: transports.docker: scope %q: %w", ErrInvalid, scope, err)
				}
			}
			reqs, keys, err := parseRequirements(scopes[scope], p.keyFiles)
			if err != nil {
				return nil, fmt.Errorf("%w: transports.%s[%q]: %w", ErrInvalid, transport, scope, err)
			}
			p.keyFiles = keys
			if transport == "docker" {
				p.Docker[scope] = reqs
			}
		}
	}
	return p, nil
}

func parseRequirements(raws []json.RawMessage, keyFiles []string) ([]Requirement, []string, error) {
	if len(raws) == 0 {
		return nil, keyFiles, errors.New("a requirement list must not be empty (use insecureAcceptAnything to accept anything)")
	}
	reqs := make([]Requirement, 0, len(raws))
	for i, r := range raws {
		req, files, err := parseRequirement(r)
		if err != nil {
			return nil, keyFiles, fmt.Errorf("requirement %d: %w", i, err)
		}
		keyFiles = append(keyFiles, files...)
		reqs = append(reqs, req)
	}
	return reqs, keyFiles, nil
}

type rawRequirement struct {
	Type string `json:"type"`
}

// rawSigstore is a sigstoreSigned requirement; the keyless fields are read
// only to refuse them precisely.
type rawSigstore struct {
	Type                string          `json:"type"`
	KeyPath             string          `json:"keyPath"`
	KeyPaths            []string        `json:"keyPaths"`
	KeyData             string          `json:"keyData"`
	KeyDatas            []string        `json:"keyDatas"`
	Fulcio              json.RawMessage `json:"fulcio"`
	PKI                 json.RawMessage `json:"pki"`
	RekorPublicKeyPath  string          `json:"rekorPublicKeyPath"`
	RekorPublicKeyPaths []string        `json:"rekorPublicKeyPaths"`
	RekorPublicKeyData  string          `json:"rekorPublicKeyData"`
	RekorPublicKeyDatas []string        `json:"rekorPublicKeyDatas"`
	SignedIdentity      json.RawMessage `json:"signedIdentity"`
}

type rawSignedBy struct {
	Type           string          `json:"type"`
	KeyType        string          `json:"keyType"`
	KeyPath        string          `json:"keyPath"`
	KeyPaths       []string        `json:"keyPaths"`
	KeyData        string          `json:"keyData"`
	SignedIdentity json.RawMessage `json:"signedIdentity"`
}

type rawIdentity struct {
	Type             string `json:"type"`
	DockerReference  string `json:"dockerReference"`
	DockerRepository string `json:"dockerRepository"`
	Prefix           string `json:"prefix"`
	SignedPrefix     string `json:"signedPrefix"`
}

func parseRequirement(data json.RawMessage) (Requirement, []string, error) {
	var head rawRequirement
	if err := json.Unmarshal(data, &head); err != nil {
		return Requirement{}, nil, err
	}
	switch head.Type {
	case TypeAcceptAnything, TypeReject:
		var r rawRequirement
		if err := strictjson.Unmarshal(data, &r); err != nil {
			return Requirement{}, nil, fmt.Errorf("%s: %w", head.Type, err)
		}
		return Requirement{Type: head.Type}, nil, nil
	case TypeSignedBy:
		var r rawSignedBy
		if err := strictjson.Unmarshal(data, &r); err != nil {
			return Requirement{}, nil, fmt.Errorf("signedBy: %w", err)
		}
		return Requirement{Type: TypeSignedBy, Unsupported: "signedBy (GPG, simple signing) signatures are not verified by accel-cri; use sigstoreSigned"}, nil, nil
	case TypeSigstoreSigned:
		return parseSigstore(data)
	case "":
		return Requirement{}, nil, errors.New("\"type\" is missing")
	default:
		return Requirement{}, nil, fmt.Errorf("unknown requirement type %q", head.Type)
	}
}

func parseSigstore(data json.RawMessage) (Requirement, []string, error) {
	var r rawSigstore
	if err := strictjson.Unmarshal(data, &r); err != nil {
		return Requirement{}, nil, fmt.Errorf("sigstoreSigned: %w", err)
	}
	req := Requirement{Type: TypeSigstoreSigned}
	id, err := parseIdentity(r.SignedIdentity)
	if err != nil {
		return Requirement{}, nil, fmt.Errorf("sigstoreSigned: signedIdentity: %w", err)
	}
	req.Identity = id
	if len(r.Fulcio) > 0 || len(r.PKI) > 0 {
		if r.KeyPath != "" || len(r.KeyPaths) > 0 || r.KeyData != "" || len(r.KeyDatas) > 0 {
			return Requirement{}, nil, errors.New("sigstoreSigned: keys and fulcio/pki exclude each other")
		}
		req.Unsupported = "keyless (fulcio, pki) sigstore signatures are not verified by accel-cri; use keyPath, keyPaths or keyData"
		return req, nil, nil
	}
	if r.RekorPublicKeyPath != "" || len(r.RekorPublicKeyPaths) > 0 || r.RekorPublicKeyData != "" || len(r.RekorPublicKeyDatas) > 0 {
		req.Unsupported = "Rekor transparency-log checks (rekorPublicKey*) are not done by accel-cri; remove them to verify with the key alone"
		return req, nil, nil
	}
	set := 0
	for _, ok := range []bool{r.KeyPath != "", r.KeyPaths != nil, r.KeyData != "", r.KeyDatas != nil} {
		if ok {
			set++
		}
	}
	if set != 1 {
		return Requirement{}, nil, errors.New("sigstoreSigned: exactly one of keyPath, keyPaths, keyData and keyDatas is required")
	}
	paths := r.KeyPaths
	if r.KeyPath != "" {
		paths = []string{r.KeyPath}
	}
	datas := r.KeyDatas
	if r.KeyData != "" {
		datas = []string{r.KeyData}
	}
	if (r.KeyPaths != nil && len(paths) == 0) || (r.KeyDatas != nil && len(datas) == 0) {
		return Requirement{}, nil, errors.New("sigstoreSigned: an empty key list")
	}
	if len(paths)+len(datas) > maxKeys {
		return Requirement{}, nil, fmt.Errorf("sigstoreSigned: more than %d keys", maxKeys)
	}
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			return Requirement{}, nil, fmt.Errorf("sigstoreSigned: keyPath %q is not absolute", p)
		}
		k, err := signature.LoadPublicKey(p)
		if err != nil {
			return Requirement{}, nil, fmt.Errorf("sigstoreSigned: %w", err)
		}
		req.Keys = append(req.Keys, k)
	}
	for i, d := range datas {
		pem, err := base64.StdEncoding.DecodeString(d)
		if err != nil {
			return Requirement{}, nil, fmt.Errorf("sigstoreSigned: keyData %d is not base64: %w", i, err)
		}
		k, err := signature.ParsePublicKey(pem, fmt.Sprintf("keyData %d", i))
		if err != nil {
			return Requirement{}, nil, fmt.Errorf("sigstoreSigned: %w", err)
		}
		req.Keys = append(req.Keys, k)
	}
	return req, paths, nil
}

func parseIdentity(data json.RawMessage) (IdentityRule, error) {
	if len(data) == 0 || bytes.Equal(data, []byte("null")) {
		return IdentityRule{Type: IdentityMatchRepoDigestOrExact}, nil
	}
	var r rawIdentity
	if err := strictjson.Unmarshal(data, &r); err != nil {
		return IdentityRule{}, err
	}
	none := r.DockerReference == "" && r.DockerRepository == "" && r.Prefix == "" && r.SignedPrefix == ""
	switch r.Type {
	case IdentityMatchRepoDigestOrExact, IdentityMatchRepository:
		if !none {
			return IdentityRule{}, fmt.Errorf("%s takes no fields", r.Type)
		}
		return IdentityRule{Type: r.Type}, nil
	case IdentityExactReference:
		if r.DockerRepository != "" || r.Prefix != "" || r.SignedPrefix != "" {
			return IdentityRule{}, errors.New("exactReference takes only dockerReference")
		}
		ref, err := reference.ParseNamed(r.DockerReference)
		if err != nil {
			return IdentityRule{}, fmt.Errorf("exactReference: dockerReference %q: %w", r.DockerReference, err)
		}
		if reference.IsNameOnly(ref) {
			return IdentityRule{}, fmt.Errorf("exactReference: dockerReference %q has no tag or digest", r.DockerReference)
		}
		return IdentityRule{Type: r.Type, Reference: ref.String()}, nil
	case IdentityExactRepository:
		if r.DockerReference != "" || r.Prefix != "" || r.SignedPrefix != "" {
			return IdentityRule{}, errors.New("exactRepository takes only dockerRepository")
		}
		ref, err := reference.ParseNamed(r.DockerRepository)
		if err != nil {
			return IdentityRule{}, fmt.Errorf("exactRepository: dockerRepository %q: %w", r.DockerRepository, err)
		}
		if !reference.IsNameOnly(ref) {
			return IdentityRule{}, fmt.Errorf("exactRepository: dockerRepository %q has a tag or digest", r.DockerRepository)
		}
		return IdentityRule{Type: r.Type, Reference: ref.Name()}, nil
	case IdentityRemap:
		if r.DockerReference != "" || r.DockerRepository != "" {
			return IdentityRule{}, errors.New("remapIdentity takes only prefix and signedPrefix")
		}
		for _, p := range []string{r.Prefix, r.SignedPrefix} {
			if err := validateDockerScope(p); err != nil || p == "" || strings.HasPrefix(p, "*.") {
				return IdentityRule{}, fmt.Errorf("remapIdentity: %q is not a registry, namespace or repository", p)
			}
		}
		return IdentityRule{Type: r.Type, Prefix: r.Prefix, SignedPrefix: r.SignedPrefix}, nil
	case "":
		return IdentityRule{}, errors.New("\"type\" is missing")
	default:
		return IdentityRule{}, fmt.Errorf("unknown signedIdentity type %q", r.Type)
	}
}

// validateDockerScope checks a scope of the docker transport: "" (the
// transport's default), "*.domain", a registry host[:port], a namespace or
// repository under it, or a full reference with tag or digest. Scopes are
// written fully expanded ("docker.io/library/busybox"), never normalized.
func validateDockerScope(scope string) error {
	if scope == "" {
		return nil
	}
	if rest, ok := strings.CutPrefix(scope, "*."); ok {
		if rest == "" || strings.ContainsAny(rest, "/:@*") {
			return errors.New("a wildcard scope is *.<domain>, nothing else")
		}
		return nil
	}
	if strings.Contains(scope, "://") {
		return errors.New("a scope has no URL scheme")
	}
	ref, err := reference.ParseNamed(scope)
	if err == nil {
		if ref.String() != scope {
			return fmt.Errorf("not fully expanded: write %q", ref.String())
		}
		return nil
	}
	// A registry alone ("registry.example.com:5000") or a namespace is not
	// a reference the parser accepts when it has no path; check it as the
	// prefix of one.
	if _, err2 := reference.ParseNamed(scope + "/x"); err2 == nil && !strings.ContainsAny(scope, "@") {
		if !strings.Contains(scope, "/") && !strings.ContainsAny(scope, ".:") && scope != "localhost" {
			return errors.New("a registry scope names a host (with a dot or a port, or localhost)")
		}
		return nil
	}
	return err
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
