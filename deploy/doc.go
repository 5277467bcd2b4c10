// Package deploy holds what a node installs besides the binary: the systemd
// unit (accel-cri.service) and the production config (config.toml). It has
// no code; its test keeps both loadable and complete.
package deploy
