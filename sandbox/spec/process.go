package spec

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// This file builds the process part of the spec: arguments, environment,
// working directory, terminal, user and groups.

const defaultPathEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// withCRIBase turns containerd's default spec (oci.WithNewSpec starts from
// it) into the base of a CRI container, as containerd's CRI does: no /run
// tmpfs (images may ship content there), no default rlimits (the container
// inherits the runtime's), no default seccomp or AppArmor profile (the
// security opts decide).
func withCRIBase() oci.SpecOpts {
	return oci.Compose(
		oci.WithoutRunMount,
		func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
			ensureProcess(s)
			s.Process.Rlimits = nil
			s.Process.ApparmorProfile = ""
			if s.Linux != nil {
				s.Linux.Seccomp = nil
			}
			return nil
		},
	)
}

// withPodProcess runs the sandbox image's entrypoint and cmd with its env
// and working directory.
func withPodProcess(img ocispec.ImageConfig) (oci.SpecOpts, error) {
	args := append(slices.Clone(img.Entrypoint), img.Cmd...)
	if len(args) == 0 {
		return nil, fmt.Errorf("%w: sandbox image has no entrypoint or cmd", errdefs.ErrFailedPrecondition)
	}
	cwd := img.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	env := mergeEnv([]string{defaultPathEnv}, img.Env)
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		ensureProcess(s)
		s.Process.Args = args
		s.Process.CommandLine = ""
		s.Process.Env = env
		s.Process.Cwd = cwd
		return nil
	}, nil
}

// containerArgs merges the CRI command and args with the image's entrypoint
// and cmd the way kubelet expects (and Docker did): a command replaces the
// image entrypoint and drops the image cmd; args replace the image cmd.
func containerArgs(c *runtimeapi.ContainerConfig, img ocispec.ImageConfig) ([]string, error) {
	command, args := c.GetCommand(), c.GetArgs()
	if len(command) == 0 {
		// An entrypoint of [""] is Docker's way of saying "none".
		if len(img.Entrypoint) != 1 || img.Entrypoint[0] != "" {
			command = img.Entrypoint
		}
		if len(args) == 0 {
			args = img.Cmd
		}
	}
	out := append(slices.Clone(command), args...)
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no command specified", errdefs.ErrInvalidArgument)
	}
	return out, nil
}

// mergeEnv merges KEY=VALUE lists; a later list wins per key and a key keeps
// the position of its first appearance.
func mergeEnv(lists ...[]string) []string {
	var out []string
	index := map[string]int{}
	for _, l := range lists {
		for _, e := range l {
			k, _, _ := strings.Cut(e, "=")
			if i, ok := index[k]; ok {
				out[i] = e
				continue
			}
			index[k] = len(out)
			out = append(out, e)
		}
	}
	return out
}

// containerEnv is PATH (a default), HOSTNAME, then the image env, then the
// CRI envs; later wins per key.
func containerEnv(c *runtimeapi.ContainerConfig, img ocispec.ImageConfig, hostname string) []string {
	cri := make([]string, 0, len(c.GetEnvs()))
	for _, kv := range c.GetEnvs() {
		cri = append(cri, kv.GetKey()+"="+string(kv.GetValue()))
	}
	return mergeEnv([]string{defaultPathEnv, "HOSTNAME=" + hostname}, img.Env, cri)
}

// podHostname is the HOSTNAME a container of the pod sees: the pod's
// hostname, or the node's for pods that do not set one.
func (b *Builder) podHostname(pod *runtimeapi.PodSandboxConfig) (string, error) {
	if h := pod.GetHostname(); h != "" {
		if err := checkHostname(h); err != nil {
			return "", err
		}
		return h, nil
	}
	h, err := b.host.Hostname()
	if err != nil {
		return "", fmt.Errorf("get node hostname: %w", err)
	}
	return h, nil
}

// checkHostname refuses a pod hostname that sethostname, /etc/hostname or
// HOSTNAME would mangle: more than 64 bytes, white space, control
// characters or '/'. cri checks the full RFC 1123 syntax first.
func checkHostname(h string) error {
	if len(h) > 64 || strings.ContainsFunc(h, func(r rune) bool { return r == '/' || unicode.IsSpace(r) || unicode.IsControl(r) }) {
		return fmt.Errorf("%w: hostname %q is not a host name", errdefs.ErrInvalidArgument, h)
	}
	return nil
}

// withContainerProcess sets args, env, working directory and terminal.
func withContainerProcess(c *runtimeapi.ContainerConfig, img ocispec.ImageConfig, hostname string) (oci.SpecOpts, error) {
	args, err := containerArgs(c, img)
	if err != nil {
		return nil, err
	}
	env := containerEnv(c, img, hostname)
	cwd := c.GetWorkingDir()
	if cwd == "" {
		cwd = img.WorkingDir
	}
	if cwd == "" {
		cwd = "/"
	}
	tty := c.GetTty()
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		ensureProcess(s)
		s.Process.Args = args
		s.Process.CommandLine = ""
		s.Process.Env = env
		s.Process.Cwd = cwd
		s.Process.Terminal = tty
		if tty {
			s.Process.Env = mergeEnv(s.Process.Env, []string{"TERM=xterm"})
		}
		return nil
	}, nil
}

// userString is the OCI image style user ("name", "uid", "name:gid",
// "uid:gid") for a CRI user: a username wins over a uid; a group needs a
// user. "" means the CRI asked for nothing.
func userString(username string, uid, gid *runtimeapi.Int64Value) (string, error) {
	var user string
	if uid != nil {
		user = strconv.FormatInt(uid.GetValue(), 10)
	}
	if username != "" {
		user = username
	}
	if user == "" {
		if gid != nil {
			return "", fmt.Errorf("%w: run_as_group is set without run_as_user or run_as_username", errdefs.ErrInvalidArgument)
		}
		return "", nil
	}
	if gid != nil {
		user += ":" + strconv.FormatInt(gid.GetValue(), 10)
	}
	return user, nil
}

// withUser is the user the CRI asks for (userString), else the image's
// USER, and the option that sets it (none for root by default).
func withUser(username string, uid, gid *runtimeapi.Int64Value, img ocispec.ImageConfig) (string, []oci.SpecOpts, error) {
	user, err := userString(username, uid, gid)
	if err != nil {
		return "", nil, err
	}
	if user == "" {
		user = img.User
	}
	if user == "" {
		return "", nil, nil
	}
	return user, []oci.SpecOpts{oci.WithUser(user)}, nil
}

// withPodUser runs the pause process as the pod's run_as_user/run_as_group,
// or the sandbox image's user, with the pod's supplemental groups.
func withPodUser(sc *runtimeapi.LinuxSandboxSecurityContext, img ocispec.ImageConfig) (oci.SpecOpts, error) {
	_, opts, err := withUser("", sc.GetRunAsUser(), sc.GetRunAsGroup(), img)
	if err != nil {
		return nil, err
	}
	opts = append(opts, withSupplementalGroups(sc.GetSupplementalGroups()))
	return oci.Compose(opts...), nil
}

// withContainerUser sets the container's user and groups. The user is
// run_as_username, else run_as_user (each with run_as_group), else the
// image's USER, else root. Groups follow SupplementalGroupsPolicy: Merge adds
// the user's groups from the image's /etc/group to the CRI supplemental
// groups; Strict uses only the CRI supplemental groups (the primary group is
// run_as_group, or the user's group from /etc/passwd).
//
// Name lookups read the container's rootfs: the core applies these opts
// after containerd.WithNewSnapshot (or with an absolute spec.Root.Path and
// no snapshot, as the tests do).
func withContainerUser(sc *runtimeapi.LinuxContainerSecurityContext, img ocispec.ImageConfig) (oci.SpecOpts, error) {
	user, opts, err := withUser(sc.GetRunAsUsername(), sc.GetRunAsUser(), sc.GetRunAsGroup(), img)
	if err != nil {
		return nil, err
	}
	switch policy := sc.GetSupplementalGroupsPolicy(); policy {
	case runtimeapi.SupplementalGroupsPolicy_Merge:
		// The groups of the user (without its group part) listed in the
		// image's /etc/group; root when no user is set.
		member, _, _ := strings.Cut(user, ":")
		if member == "" {
			member = "0"
		}
		opts = append(opts, withImageGroups(member))
	case runtimeapi.SupplementalGroupsPolicy_Strict:
	default:
		return nil, fmt.Errorf("%w: unknown supplemental_groups_policy %d", errdefs.ErrInvalidArgument, policy)
	}
	opts = append(opts, withSupplementalGroups(sc.GetSupplementalGroups()))
	return oci.Compose(opts...), nil
}

// withImageGroups adds the groups the image's /etc/group lists user (a name
// or uid) in, keeping the groups already set.
func withImageGroups(user string) oci.SpecOpts {
	return func(ctx context.Context, client oci.Client, c *containers.Container, s *oci.Spec) error {
		ensureProcess(s)
		have := slices.Clone(s.Process.User.AdditionalGids)
		if err := oci.WithAdditionalGIDs(user)(ctx, client, c, s); err != nil {
			return fmt.Errorf("groups of user %q from the image: %w", user, err)
		}
		s.Process.User.AdditionalGids = mergeGIDs(have, s.Process.User.AdditionalGids)
		return nil
	}
}

// withSupplementalGroups adds CRI supplemental groups.
func withSupplementalGroups(groups []int64) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		ensureProcess(s)
		add := make([]uint32, 0, len(groups))
		for _, g := range groups {
			if g < 0 || g > 1<<31-1 {
				return fmt.Errorf("%w: supplemental group %d out of range", errdefs.ErrInvalidArgument, g)
			}
			add = append(add, uint32(g))
		}
		s.Process.User.AdditionalGids = mergeGIDs(s.Process.User.AdditionalGids, add)
		return nil
	}
}

// mergeGIDs is the sorted union of two group lists.
func mergeGIDs(a, b []uint32) []uint32 {
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

func ensureProcess(s *oci.Spec) {
	if s.Process == nil {
		s.Process = &runtimespec.Process{}
	}
}

func ensureLinux(s *oci.Spec) {
	if s.Linux == nil {
		s.Linux = &runtimespec.Linux{}
	}
}

func ensureResources(s *oci.Spec) {
	ensureLinux(s)
	if s.Linux.Resources == nil {
		s.Linux.Resources = &runtimespec.LinuxResources{}
	}
}
