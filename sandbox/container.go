package sandbox

// Exit reasons kubelet shows.
const (
	reasonCompleted  = "Completed"
	reasonError      = "Error"
	reasonOOMKilled  = "OOMKilled"
	reasonStartError = "StartError"
	reasonUnknown    = "Unknown"
	// exitCodeStartError is what a container that failed to start reports.
	exitCodeStartError = 128
	// exitCodeUnknown is reported when the exit happened while nobody
	// could observe it and containerd kept no status (the shim was lost).
	exitCodeUnknown = 255
)
