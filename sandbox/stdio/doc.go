// Package stdio owns the IO of the processes accel-cri runs in containers:
// the FIFOs their shim writes into and reads from, the copy of a
// container's output into its CRI log (in the format of package crilog),
// the fan-out of that output to attached clients, the attached clients'
// stdin, and the output of exec sessions.
//
// It knows neither pods nor containers: the caller (the sandbox core)
// gives it directories, log paths, exec ids and Options, and the way to
// tell a shim to close a process's stdin. On the host it only makes,
// opens and removes FIFOs in the directories it is given and writes the
// log files at the paths it is given; it never talks to containerd itself,
// but hands containerd's client the FIFO paths in cio types.
//
// A container's main process:
//
//	io, err := stdio.New(stateDir, logPath, stdio.Options{Stdin: true})
//	task, err := ctr.NewTask(ctx, io.Creator())  // after a restart: ctr.Task(ctx, io.Attacher())
//	io.SetStdinCloser(closeStdinOfTask)
//	err = task.Start(ctx)
//	io.ReleaseHolds()
//	go io.Attach(ctx, stdio.Attachment{Stdout: w}) // any number of clients
//	...                                             // the task exited:
//	io.Wait(5 * time.Second)                       // the output is in the log
//	io.Close()
//
// An exec session: NewExecIO makes its FIFOs and is the cio.IO given to
// the shim; Start once the process started, WaitOutput after it exited,
// then Cancel, Wait and Close (which removes the FIFOs) once it is deleted.
package stdio
