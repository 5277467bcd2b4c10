// Package cri serves the Kubernetes CRI v1 RuntimeService and ImageService
// over gRPC. It owns the wire: one file per CRI area validates each request,
// translates it to the domain packages (sandbox, images) and translates the
// answer back. Handlers return ordinary wrapped errors; one interceptor maps
// them to gRPC status codes, logs and recovers panics. It must not talk to
// containerd directly or hold any containerd type.
package cri
