package sandbox

// ParseFeatures reads the JSON of `<oci runtime> features` the way the
// runtime handlers do at start (for accel-cri check).
func ParseFeatures(b []byte) (HandlerFeatures, error) { return parseFeatures(b) }
