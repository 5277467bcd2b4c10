// Package metrics owns accel-cri's Prometheus metrics: its own registry (Go
// and process collectors included, nothing on the global default registry),
// the series for CRI calls, pods and containers by state, image pulls, CNI
// ADD/DEL, devices and the managed containerd, and the HTTP server that
// serves them on /metrics.
//
// The domain packages do not import Prometheus. They report through small
// observer interfaces that *Metrics implements (images.PullObserver,
// podnet.CNIObserver, a CDI injector decorator), or are asked at scrape
// time through small lister interfaces (RuntimeLister, DeviceLister,
// ContainerdDaemon), so a scrape always shows the current state and no
// hook has to keep counts in step.
//
//	m := metrics.New(metrics.WithRuntime(rt), metrics.WithContainerd(daemon))
//	g := grpc.NewServer(grpc.ChainUnaryInterceptor(m.UnaryInterceptor, cri.UnaryInterceptor))
//	srv, err := metrics.Listen("127.0.0.1:9838", m)
//	go srv.Serve()
//	defer srv.Close()
package metrics
