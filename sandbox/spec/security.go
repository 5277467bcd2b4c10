package spec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/containerd/containerd/v2/contrib/apparmor"
	"github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/cap"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// This file builds the security parts of the spec: capabilities, seccomp,
// AppArmor, privileged mode, masked and read-only paths.

// Deprecated string forms of security profiles (seccomp_profile_path,
// apparmor_profile).
const (
	profileRuntimeDefault = "runtime/default"
	profileDockerDefault  = "docker/default"
	profileUnconfined     = "unconfined"
	profileLocalhost      = "localhost/"
)

// appArmorDefaultProfile is the name of the profile accel-cri loads for
// RuntimeDefault on hosts with AppArmor.
const appArmorDefaultProfile = "accel-cri-default"

// defaultCapabilities is containerd's (and Docker's) default capability set.
var defaultCapabilities = []string{
	"CAP_CHOWN",
	"CAP_DAC_OVERRIDE",
	"CAP_FSETID",
	"CAP_FOWNER",
	"CAP_MKNOD",
	"CAP_NET_RAW",
	"CAP_SETGID",
	"CAP_SETUID",
	"CAP_SETFCAP",
	"CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT",
	"CAP_KILL",
	"CAP_AUDIT_WRITE",
}

// defaultProcPaths are containerd's default masked and read-only paths,
// taken from its default spec.
var defaultProcPaths = sync.OnceValues(func() ([]string, []string) {
	ctx := namespaces.WithNamespace(context.Background(), "accel-cri")
	s, err := oci.GenerateSpec(ctx, nil, &containers.Container{ID: "default"})
	if err != nil || s.Linux == nil {
		return nil, nil
	}
	return s.Linux.MaskedPaths, s.Linux.ReadonlyPaths
})

// capName turns a CRI capability name ("net_admin", "CAP_NET_ADMIN") into
// the OCI one ("CAP_NET_ADMIN"); "ALL" stays "ALL".
func capName(field, name string) (string, error) {
	n := strings.ToUpper(strings.TrimSpace(name))
	if n == "ALL" {
		return n, nil
	}
	if !strings.HasPrefix(n, "CAP_") {
		n = "CAP_" + n
	}
	if !slices.Contains(cap.Known(), n) {
		return "", fmt.Errorf("%w: %s: unknown capability %q", errdefs.ErrInvalidArgument, field, name)
	}
	return n, nil
}

func capNames(field string, names []string) ([]string, error) {
	out := make([]string, 0, len(names))
	for i, n := range names {
		c, err := capName(fmt.Sprintf("%s[%d]", field, i), n)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// containerCapabilities computes a container's capability sets as Docker
// does: the base is all of accel-cri's capabilities when add has "ALL", else
// the default set; drop removes (everything for "ALL"); then the individual
// adds and the ambient ones are added. Ambient capabilities are also
// inheritable, permitted, effective and bounding (the kernel needs that).
// A capability accel-cri itself lacks (CAP_SYS_RESOURCE on hosts like this
// one) can not be given: runc would fail, so it is refused here. current
// are accel-cri's capabilities (Host.Capabilities).
func containerCapabilities(c *runtimeapi.Capability, current []string) (*runtimespec.LinuxCapabilities, error) {
	add, err := capNames("capabilities.add_capabilities", c.GetAddCapabilities())
	if err != nil {
		return nil, err
	}
	drop, err := capNames("capabilities.drop_capabilities", c.GetDropCapabilities())
	if err != nil {
		return nil, err
	}
	ambient, err := capNames("capabilities.add_ambient_capabilities", c.GetAddAmbientCapabilities())
	if err != nil {
		return nil, err
	}
	if slices.Contains(ambient, "ALL") {
		return nil, fmt.Errorf("%w: capabilities.add_ambient_capabilities: \"ALL\" is not allowed", errdefs.ErrInvalidArgument)
	}
	caps := slices.Clone(defaultCapabilities)
	if slices.Contains(add, "ALL") {
		caps = slices.Clone(current)
	}
	if slices.Contains(drop, "ALL") {
		caps = nil
	} else {
		caps = slices.DeleteFunc(caps, func(c string) bool { return slices.Contains(drop, c) })
	}
	for _, c := range slices.Concat(add, ambient) {
		if c == "ALL" || slices.Contains(caps, c) {
			continue
		}
		if !slices.Contains(current, c) {
			return nil, fmt.Errorf("%w: capability %s is not available to accel-cri on this host", errdefs.ErrFailedPrecondition, c)
		}
		caps = append(caps, c)
	}
	return &runtimespec.LinuxCapabilities{
		Bounding:    caps,
		Effective:   slices.Clone(caps),
		Permitted:   slices.Clone(caps),
		Inheritable: slices.Clone(ambient),
		Ambient:     slices.Clone(ambient),
	}, nil
}

func withCapabilities(c *runtimespec.LinuxCapabilities) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		ensureProcess(s)
		s.Process.Capabilities = c
		return nil
	}
}

// withPrivileged gives a privileged container what Docker's --privileged
// does: all of accel-cri's capabilities (caps), the host's devices
// (hostDevs) and access to all devices (unless allDevices is false, for
// privileged_without_host_devices handlers: then only the devices the
// container asked for, as containerd does), no masked or read-only /proc
// paths, writable sysfs and cgroupfs, no AppArmor profile. Seccomp is
// decided by seccompOpt.
func withPrivileged(caps []string, hostDevs []runtimespec.LinuxDevice, allDevices bool) oci.SpecOpts {
	devices := oci.Compose(withHostDevices(hostDevs), oci.WithAllDevicesAllowed)
	if !allDevices {
		devices = func(context.Context, oci.Client, *containers.Container, *oci.Spec) error { return nil }
	}
	return oci.Compose(
		func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
			ensureProcess(s)
			s.Process.Capabilities = &runtimespec.LinuxCapabilities{
				Bounding:  slices.Clone(caps),
				Effective: slices.Clone(caps),
				Permitted: slices.Clone(caps),
			}
			return nil
		},
		oci.WithMaskedPaths(nil),
		oci.WithReadonlyPaths(nil),
		oci.WithWriteableSysfs,
		oci.WithWriteableCgroupfs,
		oci.WithApparmorProfile(""),
		devices,
	)
}

// withProcPaths sets the masked and read-only paths: the CRI lists when
// kubelet sends them (it sends the defaults for procMount Default), else
// containerd's defaults. An empty list and no list look the same on the
// wire, so procMount Unmasked (which needs a user namespace) is not honoured.
func withProcPaths(sc *runtimeapi.LinuxContainerSecurityContext) oci.SpecOpts {
	masked, readonly := defaultProcPaths()
	if l := sc.GetMaskedPaths(); len(l) > 0 {
		masked = l
	}
	if l := sc.GetReadonlyPaths(); len(l) > 0 {
		readonly = l
	}
	return oci.Compose(oci.WithMaskedPaths(slices.Clone(masked)), oci.WithReadonlyPaths(slices.Clone(readonly)))
}

// withNoNewPrivileges sets no_new_privs as asked.
func withNoNewPrivileges(on bool) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		ensureProcess(s)
		s.Process.NoNewPrivileges = on
		return nil
	}
}

// withRootfsReadonly sets whether the root filesystem is read-only.
func withRootfsReadonly(on bool) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Root == nil {
			s.Root = &runtimespec.Root{Path: "rootfs"}
		}
		s.Root.Readonly = on
		return nil
	}
}

// securityProfile returns the profile a security context asks for: the
// structured field, else the deprecated string form. nil means nothing was
// asked (unconfined for seccomp, like containerd without
// unset_seccomp_profile).
func securityProfile(field string, sp *runtimeapi.SecurityProfile, deprecated string) (*runtimeapi.SecurityProfile, error) {
	if sp != nil {
		switch sp.GetProfileType() {
		case runtimeapi.SecurityProfile_RuntimeDefault, runtimeapi.SecurityProfile_Unconfined:
			if sp.GetLocalhostRef() != "" {
				return nil, fmt.Errorf("%w: %s: localhost_ref is only for profile type Localhost", errdefs.ErrInvalidArgument, field)
			}
		case runtimeapi.SecurityProfile_Localhost:
			if sp.GetLocalhostRef() == "" {
				return nil, fmt.Errorf("%w: %s: profile type Localhost needs localhost_ref", errdefs.ErrInvalidArgument, field)
			}
		default:
			return nil, fmt.Errorf("%w: %s: unknown profile type %d", errdefs.ErrInvalidArgument, field, sp.GetProfileType())
		}
		return sp, nil
	}
	switch deprecated {
	case "":
		return nil, nil
	case profileRuntimeDefault, profileDockerDefault:
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}, nil
	case profileUnconfined:
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}, nil
	}
	ref, ok := strings.CutPrefix(deprecated, profileLocalhost)
	if !ok || ref == "" {
		return nil, fmt.Errorf("%w: %s: invalid profile %q", errdefs.ErrInvalidArgument, field, deprecated)
	}
	return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: ref}, nil
}

// seccompOpt returns the seccomp option for a security context, or nil for
// none. RuntimeDefault is containerd's default profile (it depends on the
// capabilities, so the option must come after them); Localhost loads the
// JSON profile (OCI LinuxSeccomp form) from the absolute path now, so a
// missing or bad file fails the request.
//
// Privileged processes run without seccomp whatever profile they name (the
// profile's form is still checked): Kubernetes documents that privileged
// containers run Unconfined, containerd's CRI (generateSeccompSpecOpts) and
// CRI-O ignore the profile of a privileged container, and critest's
// "should ignore a seccomp profile that blocks setting hostname when
// privileged" holds runtimes to it.
func (b *Builder) seccompOpt(field string, sp *runtimeapi.SecurityProfile, deprecated string, privileged bool) (oci.SpecOpts, error) {
	sp, err := securityProfile(field, sp, deprecated)
	if err != nil || sp == nil || privileged {
		return nil, err
	}
	switch sp.GetProfileType() {
	case runtimeapi.SecurityProfile_Unconfined:
		return nil, nil
	case runtimeapi.SecurityProfile_RuntimeDefault:
		return seccomp.WithDefaultProfile(), nil
	}
	profile, err := b.loadSeccompProfile(field, strings.TrimPrefix(sp.GetLocalhostRef(), profileLocalhost))
	if err != nil {
		return nil, err
	}
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		ensureLinux(s)
		p := *profile
		s.Linux.Seccomp = &p
		return nil
	}, nil
}

// maxSeccompProfile bounds the size of a Localhost seccomp profile.
const maxSeccompProfile = 4 << 20

func (b *Builder) loadSeccompProfile(field, path string) (*runtimespec.LinuxSeccomp, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("%w: %s: localhost profile %q must be an absolute path", errdefs.ErrInvalidArgument, field, path)
	}
	f, err := b.host.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s: seccomp profile %q does not exist", errdefs.ErrNotFound, field, path)
		}
		return nil, fmt.Errorf("%s: open seccomp profile: %w", field, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSeccompProfile+1))
	if err != nil {
		return nil, fmt.Errorf("%s: read seccomp profile: %w", field, err)
	}
	if len(data) > maxSeccompProfile {
		return nil, fmt.Errorf("%w: %s: seccomp profile %q is larger than %d bytes", errdefs.ErrInvalidArgument, field, path, maxSeccompProfile)
	}
	var p runtimespec.LinuxSeccomp
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("%w: %s: seccomp profile %q: %v", errdefs.ErrInvalidArgument, field, path, err)
	}
	if p.DefaultAction == "" {
		return nil, fmt.Errorf("%w: %s: seccomp profile %q has no defaultAction", errdefs.ErrInvalidArgument, field, path)
	}
	return &p, nil
}

// appArmorOpt returns the AppArmor option of a container, or nil, and the
// name of the default profile when the option uses it: the core loads that
// profile before the spec is applied (apparmor.LoadDefaultProfile). On a
// host without AppArmor a Localhost profile fails (FailedPrecondition) and
// RuntimeDefault or Unconfined mean no profile. With AppArmor, nothing
// asked or RuntimeDefault uses accel-cri's default profile (not for
// privileged containers), Localhost uses the named profile.
func appArmorOpt(sc *runtimeapi.LinuxContainerSecurityContext, enabled bool) (oci.SpecOpts, string, error) {
	sp, err := securityProfile("apparmor", sc.GetApparmor(), sc.GetApparmorProfile())
	if err != nil {
		return nil, "", err
	}
	if !enabled {
		if sp.GetProfileType() == runtimeapi.SecurityProfile_Localhost {
			return nil, "", fmt.Errorf("%w: AppArmor is not enabled on this host (profile %q)", errdefs.ErrFailedPrecondition, sp.GetLocalhostRef())
		}
		return nil, "", nil
	}
	if sp == nil {
		sp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
	}
	switch sp.GetProfileType() {
	case runtimeapi.SecurityProfile_Unconfined:
		return nil, "", nil
	case runtimeapi.SecurityProfile_RuntimeDefault:
		if sc.GetPrivileged() {
			return nil, "", nil
		}
		return apparmor.WithProfile(appArmorDefaultProfile), appArmorDefaultProfile, nil
	}
	name := strings.TrimPrefix(sp.GetLocalhostRef(), profileLocalhost)
	return apparmor.WithProfile(name), "", nil
}

// defaultCapabilitySet is the default set in the bounding, effective and
// permitted sets.
func defaultCapabilitySet() *runtimespec.LinuxCapabilities {
	return &runtimespec.LinuxCapabilities{
		Bounding:  slices.Clone(defaultCapabilities),
		Effective: slices.Clone(defaultCapabilities),
		Permitted: slices.Clone(defaultCapabilities),
	}
}
