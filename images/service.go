package images

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	containerdimages "github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/images/usage"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"k8s.io/klog/v2"
)

// ManagedLabel marks the containerd image records accel-cri creates.
const ManagedLabel = "io.accel-cri.image/managed"

// recordWriteTimeout bounds the containerd calls that record a finished pull;
// they run even when the caller's context is cancelled, so a pulled image is
// never left half-recorded.
const recordWriteTimeout = time.Minute

// pullLeaseExpiration is how long the lease of a pull protects its content
// when accel-cri dies in the middle; a live pull deletes its lease at the end.
const pullLeaseExpiration = 24 * time.Hour

// Service is the node image store. Its methods are safe for concurrent use.
// Get and List answer from an in-memory index; Pull and Remove change
// containerd's image records and then the index, one at a time.
type Service struct {
	client   *containerd.Client
	opts     options
	platform platforms.MatchComparer

	fsPath   string
	fsMaxAge time.Duration
	fsMu     sync.Mutex // one walk at a time
	fsLast   FsUsage

	verified verifier // allowed signature decisions

	pinnedIDs   map[string]bool
	pinnedNames map[string]bool

	// writeMu serializes changes to containerd image records and the index
	// (the end of Pull, Remove), so a pull cannot re-add a name a remove is
	// deleting half-way. Network transfers run outside it.
	writeMu sync.Mutex

	mu     sync.RWMutex
	byID   map[string]*entry // image id -> entry
	byName map[string]string // containerd record name -> image id
}

// entry is one image in the index with every containerd record naming it.
type entry struct {
	info    imageInfo
	records map[string]record
	image   Image // derived from info and records by refresh
}

type record struct {
	target ocispec.Descriptor
	labels map[string]string
}

// imageInfo is what the index keeps from an image's content.
type imageInfo struct {
	id      string
	size    uint64
	spec    ocispec.Image
	chainID string
}

// New builds the image service over a connected containerd client, in the
// client's default namespace. It rebuilds its index from containerd's image
// store before returning; an image without a record named by its id (one
// imported with ctr, say) gets one, so every image can be found by id.
func New(ctx context.Context, client *containerd.Client, opts ...Option) (*Service, error) {
	if client == nil {
		return nil, fmt.Errorf("%w: images: nil containerd client", errdefs.ErrInvalidArgument)
	}
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if o.snapshotter == "" {
		return nil, fmt.Errorf("%w: images: empty snapshotter name", errdefs.ErrInvalidArgument)
	}
	if o.pullProgressTimeout < 0 {
		return nil, fmt.Errorf("%w: images: negative pull progress timeout %s", errdefs.ErrInvalidArgument, o.pullProgressTimeout)
	}
	s := &Service{
		client:      client,
		opts:        o,
		platform:    platforms.Only(o.platform),
		fsPath:      o.imageFsPath,
		fsMaxAge:    fsUsageMaxAge,
		pinnedIDs:   map[string]bool{},
		pinnedNames: map[string]bool{},
		byID:        map[string]*entry{},
		byName:      map[string]string{},
	}
	for _, p := range o.pinned {
		if id, ok := parseID(p); ok {
			s.pinnedIDs[id] = true
			continue
		}
		named, err := parseRef(p)
		if err != nil {
			return nil, fmt.Errorf("images: pinned image: %w", err)
		}
		s.pinnedNames[named.String()] = true
	}
	if s.fsPath == "" {
		root, err := s.snapshotterRoot(ctx)
		if err != nil {
			klog.FromContext(ctx).Error(err, "Image filesystem path unknown; FsUsage will fail until WithImageFsPath is set", "snapshotter", o.snapshotter)
		}
		s.fsPath = root
	}
	if err := s.rebuild(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// snapshotterRoot asks containerd for the root directory of the snapshotter.
func (s *Service) snapshotterRoot(ctx context.Context) (string, error) {
	resp, err := s.client.IntrospectionService().Plugins(ctx, `type=="io.containerd.snapshotter.v1",id=="`+s.opts.snapshotter+`"`)
	if err != nil {
		return "", fmt.Errorf("images: look up snapshotter %q: %w", s.opts.snapshotter, err)
	}
	for _, p := range resp.GetPlugins() {
		if root := p.GetExports()["root"]; root != "" {
			return root, nil
		}
	}
	return "", fmt.Errorf("images: snapshotter %q exports no root directory", s.opts.snapshotter)
}

// rebuild reads every image record of the namespace into the index.
func (s *Service) rebuild(ctx context.Context) error {
	log := klog.FromContext(ctx)
	is := s.client.ImageService()
	recs, err := is.List(ctx)
	if err != nil {
		return fmt.Errorf("images: list containerd images: %w", err)
	}
	infos := map[digest.Digest]imageInfo{}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range recs {
		info, ok := infos[r.Target.Digest]
		if !ok {
			info, err = s.describe(ctx, r.Target)
			if err != nil {
				if ctx.Err() != nil || errdefs.IsUnavailable(err) || errdefs.IsDeadlineExceeded(err) || errdefs.IsCanceled(err) {
					// containerd or the caller went away: an index built
					// now would silently miss images.
					return fmt.Errorf("images: read image %q: %w", r.Name, err)
				}
				// Content missing, for another platform, or unreadable:
				// not an image this node can run. Leave the record alone.
				log.Info("Skipping image record", "name", r.Name, "target", r.Target.Digest, "err", err)
				continue
			}
			infos[r.Target.Digest] = info
		}
		s.indexAdd(info, r.Name, record{target: r.Target, labels: r.Labels})
	}
	for id, e := range s.byID {
		if _, ok := e.records[id]; ok {
			continue
		}
		names := slices.Sorted(maps.Keys(e.records))
		target := e.records[names[0]].target
		labels := map[string]string{ManagedLabel: "true"}
		r, err := createOrUpdateRecord(ctx, is, id, target, labels)
		if err != nil {
			log.Error(err, "Cannot add the id record of an image; it is still listed", "id", id, "names", names)
			continue
		}
		s.indexAdd(e.info, id, record{target: r.Target, labels: r.Labels})
	}
	for _, e := range s.byID {
		s.refresh(e)
	}
	log.V(2).Info("Image index rebuilt", "images", len(s.byID), "records", len(s.byName))
	return nil
}

// describe reads from the content store what the index keeps of an image:
// its id (config digest), config, chain id and size.
func (s *Service) describe(ctx context.Context, target ocispec.Descriptor) (imageInfo, error) {
	cs := s.client.ContentStore()
	img := containerdimages.Image{Target: target}
	configDesc, err := img.Config(ctx, cs, s.platform)
	if err != nil {
		return imageInfo{}, fmt.Errorf("image config descriptor: %w", err)
	}
	blob, err := content.ReadBlob(ctx, cs, configDesc)
	if err != nil {
		return imageInfo{}, fmt.Errorf("read image config %s: %w", configDesc.Digest, err)
	}
	var spec ocispec.Image
	if err := json.Unmarshal(blob, &spec); err != nil {
		return imageInfo{}, fmt.Errorf("decode image config %s: %w", configDesc.Digest, err)
	}
	size, err := usage.CalculateImageUsage(ctx, img, cs, usage.WithManifestLimit(s.platform, 1), usage.WithManifestUsage())
	if err != nil {
		return imageInfo{}, fmt.Errorf("image size: %w", err)
	}
	var chainID string
	if len(spec.RootFS.DiffIDs) > 0 {
		chainID = identity.ChainID(spec.RootFS.DiffIDs).String()
	}
	return imageInfo{
		id:      configDesc.Digest.String(),
		size:    uint64(max(size, 0)),
		spec:    spec,
		chainID: chainID,
	}, nil
}

// createOrUpdateRecord makes the containerd image record name point at
// target with labels set (other labels on an existing record stay) and
// returns the record as stored.
func createOrUpdateRecord(ctx context.Context, is containerdimages.Store, name string, target ocispec.Descriptor, labels map[string]string) (containerdimages.Image, error) {
	img := containerdimages.Image{Name: name, Target: target, Labels: labels}
	for {
		created, err := is.Create(ctx, img)
		if err == nil {
			return created, nil
		}
		if !errdefs.IsAlreadyExists(err) {
			return containerdimages.Image{}, fmt.Errorf("create image record %q: %w", name, err)
		}
		old, err := is.Get(ctx, name)
		if errdefs.IsNotFound(err) {
			continue // removed in between: create again
		}
		if err != nil {
			return containerdimages.Image{}, fmt.Errorf("get image record %q: %w", name, err)
		}
		var paths []string
		if old.Target.Digest != target.Digest || old.Target.MediaType != target.MediaType || old.Target.Size != target.Size {
			paths = append(paths, "target")
		}
		for k, v := range labels {
			if old.Labels[k] != v {
				paths = append(paths, "labels."+k)
			}
		}
		if len(paths) == 0 {
			return old, nil
		}
		updated, err := is.Update(ctx, img, paths...)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return containerdimages.Image{}, fmt.Errorf("update image record %q: %w", name, err)
		}
		return updated, nil
	}
}

// indexAdd records that the containerd record name now names the image of
// info, moving the name off any image it named before. Callers hold s.mu
// and call refresh on the entries they touched (indexAdd refreshes the one
// it took the name from).
func (s *Service) indexAdd(info imageInfo, name string, rec record) *entry {
	if old, ok := s.byName[name]; ok && old != info.id {
		s.indexRemove(name)
	}
	e := s.byID[info.id]
	if e == nil {
		e = &entry{records: map[string]record{}}
		s.byID[info.id] = e
	}
	e.info = info
	e.records[name] = rec
	s.byName[name] = info.id
	return e
}

// indexRemove forgets the record name; an image left with no record goes.
// Callers hold s.mu.
func (s *Service) indexRemove(name string) {
	id, ok := s.byName[name]
	if !ok {
		return
	}
	delete(s.byName, name)
	e := s.byID[id]
	if e == nil {
		return
	}
	delete(e.records, name)
	if len(e.records) == 0 {
		delete(s.byID, id)
		return
	}
	s.refresh(e)
}

// refresh derives the reported Image of e from its info and records.
// Callers hold s.mu.
func (s *Service) refresh(e *entry) {
	img := Image{
		ID:      e.info.id,
		Size:    e.info.size,
		Spec:    e.info.spec,
		ChainID: e.info.chainID,
		Pinned:  s.pinnedIDs[e.info.id],
	}
	names := slices.Sorted(maps.Keys(e.records))
	for _, n := range names {
		switch classifyName(n) {
		case kindTag:
			img.RepoTags = append(img.RepoTags, n)
		case kindDigest:
			img.RepoDigests = append(img.RepoDigests, n)
		}
		if s.pinnedNames[n] {
			img.Pinned = true
		}
	}
	// Labels: those of the id record, which accel-cri owns; else the union.
	if r, ok := e.records[e.info.id]; ok {
		img.Labels = maps.Clone(r.labels)
	} else {
		for _, n := range names {
			for k, v := range e.records[n].labels {
				if img.Labels == nil {
					img.Labels = map[string]string{}
				}
				if _, ok := img.Labels[k]; !ok {
					img.Labels[k] = v
				}
			}
		}
	}
	e.image = img
}

// lookup finds the image ref names, by full id, reference (tag or digest,
// normalized) or unambiguous id prefix of at least minIDPrefix hex digits.
// Callers hold s.mu (read).
func (s *Service) lookup(ref string) (*entry, error) {
	if ref == "" {
		return nil, fmt.Errorf("%w: image reference is empty", errdefs.ErrInvalidArgument)
	}
	if id, ok := parseID(ref); ok {
		if e := s.byID[id]; e != nil {
			return e, nil
		}
		return nil, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
	}
	named, refErr := reference.ParseDockerRef(ref)
	if refErr == nil {
		if id, ok := s.byName[named.String()]; ok {
			if e := s.byID[id]; e != nil {
				return e, nil
			}
		}
	}
	if prefix, ok := parseIDPrefix(ref); ok {
		matches := s.matchPrefix(prefix)
		switch len(matches) {
		case 0:
		case 1:
			return matches[0], nil
		default:
			return nil, fmt.Errorf("%w: image id prefix %q matches %d images", errdefs.ErrInvalidArgument, ref, len(matches))
		}
	}
	if refErr != nil {
		return nil, fmt.Errorf("%w: %q is neither an image id nor a valid image reference: %w", errdefs.ErrInvalidArgument, ref, refErr)
	}
	return nil, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
}

func (s *Service) matchPrefix(prefix string) []*entry {
	var out []*entry
	for id, e := range s.byID {
		if len(id) >= len(prefix) && id[:len(prefix)] == prefix {
			out = append(out, e)
		}
	}
	return out
}

// Get returns the image ref names: a full id ("sha256:..." or 64 hex digits),
// an unambiguous id prefix, a tag ("busybox" is
// docker.io/library/busybox:latest) or a digest reference. It fails with
// errdefs.ErrNotFound when there is no such image and errdefs.ErrInvalidArgument
// when ref is malformed or an ambiguous id prefix.
func (s *Service) Get(ctx context.Context, ref string) (Image, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, err := s.lookup(ref)
	if err != nil {
		return Image{}, err
	}
	return cloneImage(e.image), nil
}

// List returns all images, sorted by id, or with a filter only those it
// names: a full id or id prefix, a tag or digest reference, or a repository
// without tag or digest ("busybox"), which matches every image with a tag or
// digest in that repository. An unknown filter gives an empty list; a
// malformed one errdefs.ErrInvalidArgument.
func (s *Service) List(ctx context.Context, filterRef string) ([]Image, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var entries []*entry
	switch {
	case filterRef == "":
		for _, e := range s.byID {
			entries = append(entries, e)
		}
	default:
		var err error
		entries, err = s.filter(filterRef)
		if err != nil {
			return nil, err
		}
	}
	out := make([]Image, 0, len(entries))
	for _, e := range entries {
		out = append(out, cloneImage(e.image))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// filter is List's matching. Callers hold s.mu (read).
func (s *Service) filter(f string) ([]*entry, error) {
	if id, ok := parseID(f); ok {
		if e := s.byID[id]; e != nil {
			return []*entry{e}, nil
		}
		return nil, nil
	}
	named, refErr := reference.ParseNormalizedNamed(f)
	if refErr == nil {
		if reference.IsNameOnly(named) {
			repo := named.Name()
			var out []*entry
			for _, e := range s.byID {
				if slices.ContainsFunc(e.image.RepoTags, func(n string) bool { return repoOf(n) == repo }) ||
					slices.ContainsFunc(e.image.RepoDigests, func(n string) bool { return repoOf(n) == repo }) {
					out = append(out, e)
				}
			}
			if len(out) > 0 {
				return out, nil
			}
		} else {
			dref, err := reference.ParseDockerRef(f)
			if err == nil {
				if e := s.byID[s.byName[dref.String()]]; e != nil {
					return []*entry{e}, nil
				}
			}
		}
	}
	if prefix, ok := parseIDPrefix(f); ok {
		return s.matchPrefix(prefix), nil
	}
	if refErr != nil {
		return nil, fmt.Errorf("%w: image filter %q is neither an image id nor a valid image reference: %w", errdefs.ErrInvalidArgument, f, refErr)
	}
	return nil, nil
}

// cloneImage deep-copies an Image so callers cannot change the index.
func cloneImage(in Image) Image {
	out := in
	out.RepoTags = slices.Clone(in.RepoTags)
	out.RepoDigests = slices.Clone(in.RepoDigests)
	out.Labels = maps.Clone(in.Labels)
	out.Spec = cloneSpec(in.Spec)
	return out
}

func cloneSpec(in ocispec.Image) ocispec.Image {
	out := in
	if in.Created != nil {
		t := *in.Created
		out.Created = &t
	}
	out.Platform.OSFeatures = slices.Clone(in.Platform.OSFeatures)
	c := &out.Config
	c.ExposedPorts = maps.Clone(in.Config.ExposedPorts)
	c.Env = slices.Clone(in.Config.Env)
	c.Entrypoint = slices.Clone(in.Config.Entrypoint)
	c.Cmd = slices.Clone(in.Config.Cmd)
	c.Volumes = maps.Clone(in.Config.Volumes)
	c.Labels = maps.Clone(in.Config.Labels)
	out.RootFS.DiffIDs = slices.Clone(in.RootFS.DiffIDs)
	if in.History != nil {
		out.History = make([]ocispec.History, len(in.History))
		for i, h := range in.History {
			out.History[i] = h
			if h.Created != nil {
				t := *h.Created
				out.History[i].Created = &t
			}
		}
	}
	return out
}
