// Package deploy holds what a node installs besides the binary: the systemd
// unit (accel-cri.service) and the production config (config.toml), and
// what a cluster installs for accel-cri's DRA drivers (dra/: DeviceClasses, RBAC;
// dra's tests keep them decodable and their selectors right). It
// has no code; its test keeps the unit and config loadable and complete.
package deploy
