package sigtest

import (
	"bytes"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// NewRegistry is an in-process registry (go-containerregistry's) quiet in
// logs. With referrers it serves the OCI 1.1 referrers API with each
// entry's artifactType taken from the referring manifest's own artifactType
// field and the artifactType query honoured (go-containerregistry's registry
// reports the config media type and ignores the query); without, it 404s
// /v2/<name>/referrers/<digest> as Debian's docker-registry 2.8 does, so
// clients use the sha256-<hex> fallback tag.
func NewRegistry(referrers bool) http.Handler {
	inner := registry.New(registry.WithReferrersSupport(referrers), registry.Logger(log.New(io.Discard, "", 0)))
	if !referrers {
		return inner
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		repo, _, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v2/"), "/referrers/")
		if r.Method != http.MethodGet || !ok {
			inner.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		inner.ServeHTTP(rec, r)
		var idx v1.IndexManifest
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &idx) != nil {
			copyResponse(w, rec)
			return
		}
		want := r.URL.Query()["artifactType"]
		kept := idx.Manifests[:0]
		for _, d := range idx.Manifests {
			d.ArtifactType = manifestArtifactType(inner, r, repo, d.Digest.String())
			if len(want) == 0 || contains(want, d.ArtifactType) {
				kept = append(kept, d)
			}
		}
		idx.Manifests = kept
		b, err := json.Marshal(idx)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", string(idx.MediaType))
		if len(want) > 0 {
			w.Header().Set("OCI-Filters-Applied", "artifactType")
		}
		_, _ = w.Write(b)
	})
}

func manifestArtifactType(h http.Handler, orig *http.Request, repo, dgst string) string {
	req := httptest.NewRequest(http.MethodGet, "/v2/"+repo+"/manifests/"+dgst, nil).WithContext(orig.Context())
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var m struct {
		ArtifactType string `json:"artifactType"`
		Config       struct {
			MediaType string `json:"mediaType"`
		} `json:"config"`
	}
	if json.Unmarshal(rec.Body.Bytes(), &m) != nil {
		return ""
	}
	if m.ArtifactType != "" {
		return m.ArtifactType
	}
	return m.Config.MediaType
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func copyResponse(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = io.Copy(w, bytes.NewReader(rec.Body.Bytes()))
}
