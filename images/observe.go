package images

import (
	"context"
	"time"
)

// PullObserver is told about every finished pull (metrics). It must not
// block: it runs on the caller's pull path.
type PullObserver interface {
	// ObservePull reports one pull of ref: how long it took, the size of
	// the image's content (manifest, config, layers) when it succeeded,
	// and its error (classified as Pull documents) when it failed.
	ObservePull(ref string, size uint64, d time.Duration, err error)
}

// WithObserver reports every pull to o.
func WithObserver(o PullObserver) Option {
	return func(opts *options) { opts.observer = o }
}

// Pull pulls ref from its registry (see pull for the details and the error
// classes) and reports the pull to the observer set by WithObserver.
func (s *Service) Pull(ctx context.Context, ref string, auth *AuthConfig, opts ...PullOption) (Image, error) {
	start := time.Now()
	img, err := s.pull(ctx, ref, auth, opts...)
	if o := s.opts.observer; o != nil {
		var size uint64
		if err == nil {
			size = img.Size
		}
		o.ObservePull(ref, size, time.Since(start), err)
	}
	return img, err
}
