// Package bench measures a CRI runtime from the outside, the way kubelet
// uses it: the pod lifecycle (RunPodSandbox, CreateContainer,
// StartContainer, ExecSync, StopPodSandbox, RemovePodSandbox) for N pods at
// each concurrency, kubelet's steady-state polling (ListPodSandbox,
// ListContainers, ListContainerStats, ListPodSandboxStats) with L pods
// running, and the memory and CPU of the runtime's processes read from
// /proc.
//
// It owns the load, the statistics (nearest-rank percentiles), the A/B
// comparison of two runtimes with targets, and the reports: JSON, Markdown
// and an SVG chart. It talks only CRI (any endpoint, any runtime) and must
// not know about accel-cri's internals; starting the runtimes under test is
// the caller's job (cmd/accel-cri-bench, test/bench).
//
// Every pod a run creates carries the label LabelRun=<run id>; whatever
// happens (an error, a cancelled context), Run removes its pods by that
// label before it returns.
//
//	rt, _ := remote.NewRemoteRuntimeService(ctx, endpoint, 2*time.Minute, nil, false)
//	im, _ := remote.NewRemoteImageService(ctx, endpoint, 2*time.Minute, nil, false)
//	res, err := bench.Run(ctx, rt, im, bench.Config{Image: "busybox:latest", Pods: 20, Concurrency: []int{1, 8}})
//	bench.WriteMarkdown(os.Stdout, res)
package bench
