package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/hack/testimages"
	"github.com/accel-cri/accel-cri/images/signature/sigtest"
	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// sigRefusedPrefix starts the message of a pull or create the signature
// policy refused: kubelet's cri-client strips the Unknown code's prefix,
// and its evalCRIPullErr matches this one (the container's waiting reason
// SignatureValidationFailed).
const sigRefusedPrefix = "SignatureValidationFailed: "

// sigImage is one busybox variant pushed to its own repository: each
// variant has a config of its own (a label naming it), so each has a
// digest of its own and nothing one case pulls stands in for another's.
type sigImage struct {
	Repo   string // "HOST/REPO"
	Ref    string // "HOST/REPO:latest"
	Digest string // manifest digest
	Config string // config blob digest
}

func (i sigImage) DigestRef() string { return i.Repo + "@" + i.Digest }

// buildVariant is base labelled with name, and its config digest.
func buildVariant(t *testing.T, base v1.Image, name string) (v1.Image, string) {
	t.Helper()
	cf, err := base.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	if cf.Config.Labels == nil {
		cf.Config.Labels = map[string]string{}
	}
	cf.Config.Labels["io.accel-cri.test.variant"] = name
	img, err := mutate.ConfigFile(base, cf)
	if err != nil {
		t.Fatal(err)
	}
	cfgDigest, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return img, cfgDigest.String()
}

// pushImage pushes img to HOST/name:latest.
func pushImage(t *testing.T, ctx context.Context, reg *framework.Registry, img v1.Image, name, cfgDigest string) sigImage {
	t.Helper()
	repo := reg.Host() + "/" + name
	d, err := testimages.Push(ctx, img, repo+":latest", reg.RemoteOptions(ctx)...)
	if err != nil {
		t.Fatal(err)
	}
	return sigImage{Repo: repo, Ref: repo + ":latest", Digest: d, Config: cfgDigest}
}

// rawKey is an ECDSA P-256 key the test signs arbitrary payloads with, as
// cosign signs: ASN.1 signature of the payload's SHA-256, in base64.
type rawKey struct{ priv *ecdsa.PrivateKey }

func newRawKey(t *testing.T) rawKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return rawKey{k}
}

func (k rawKey) sign(t *testing.T, payload []byte) string {
	t.Helper()
	h := sha256.Sum256(payload)
	sig, err := ecdsa.SignASN1(rand.Reader, k.priv, h[:])
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

func (k rawKey) writePublic(t *testing.T, path string) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&k.priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// signedOnlyPolicy rejects everything but images of registry signed by one
// of keys, whose signature names their repository.
func signedOnlyPolicy(registry string, keys ...string) string {
	req := map[string]any{"type": "sigstoreSigned", "signedIdentity": map[string]string{"type": "matchRepository"}}
	if len(keys) == 1 {
		req["keyPath"] = keys[0]
	} else {
		req["keyPaths"] = keys
	}
	b, _ := json.MarshalIndent(map[string]any{
		"default":    []any{map[string]string{"type": "reject"}},
		"transports": map[string]any{"docker": map[string]any{registry: []any{req}}},
	}, "", "  ")
	return string(b)
}

func writePolicy(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// sigEnv is the accel-cri instance, registry and policy files of
// TestSignaturePolicy.
type sigEnv struct {
	*framework.AccelCRI
}

// podIn is a host-network pod config (no CNI needed) in namespace ns.
func (e sigEnv) podIn(t *testing.T, name, ns string) *runtimeapi.PodSandboxConfig {
	t.Helper()
	pod := e.PodConfig(t, name)
	pod.Metadata.Namespace = ns
	pod.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
	pod.DnsConfig = nil
	return pod
}

// pull pulls ref as kubelet does for a pod of namespace ns.
func (e sigEnv) pull(t *testing.T, ref, ns string) (string, error) {
	t.Helper()
	return e.Images.PullImage(ctxT(t, 2*time.Minute), spec(ref), nil, e.podIn(t, "puller", ns))
}

func (e sigEnv) mustPull(t *testing.T, ref, ns string) string {
	t.Helper()
	id, err := e.pull(t, ref, ns)
	if err != nil {
		t.Fatalf("pull %s for a pod of %s: %v\n%s", ref, ns, err, e.LogTail(20))
	}
	return id
}

// rawPull sends PullImage for a pod of ns on a plain gRPC connection, so
// the answer's code is seen as accel-cri sent it (kubelet's client turns
// Unknown into a bare error).
func (e sigEnv) rawPull(t *testing.T, ref, ns string) error {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+e.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = runtimeapi.NewImageServiceClient(conn).PullImage(ctxT(t, 2*time.Minute),
		&runtimeapi.PullImageRequest{Image: spec(ref), SandboxConfig: e.podIn(t, "raw-puller", ns)})
	return err
}

// refused pulls img for a pod of ns and wants the policy's refusal:
// code Unknown, the SignatureValidationFailed prefix, every one of wants
// in the message, through kubelet's client the same message; and, when
// the image was not in the store before, nothing of it kept: no image
// record, not its manifest nor its config in containerd's content store,
// ImageStatus empty by tag and by digest. It returns the message.
func (e sigEnv) refused(t *testing.T, img sigImage, ns string, wants ...string) string {
	t.Helper()
	wasThere := e.holds(t, img)
	err := e.rawPull(t, img.Ref, ns)
	st, _ := status.FromError(err)
	if err == nil || st.Code() != codes.Unknown || !strings.HasPrefix(st.Message(), sigRefusedPrefix) {
		t.Fatalf("pull %s for a pod of %s: %v; want code Unknown and a message starting %q\n%s", img.Ref, ns, err, sigRefusedPrefix, e.LogTail(20))
	}
	msg := st.Message()
	for _, w := range wants {
		if !strings.Contains(msg, w) {
			t.Errorf("refusal of %s lacks %q: %s", img.Ref, w, msg)
		}
	}
	// What kubelet sees: the message itself, its prefix intact.
	if _, err := e.pull(t, img.Ref, ns); err == nil || !strings.HasPrefix(err.Error(), sigRefusedPrefix) {
		t.Errorf("kubelet's client: pull %s = %v, want an error starting %q", img.Ref, err, sigRefusedPrefix)
	}
	if !wasThere && e.holds(t, img) {
		t.Errorf("refused image %s was kept", img.Ref)
	}
	t.Logf("refused %s: %s", img.Ref, msg)
	return msg
}

// holds reports whether accel-cri or its containerd keeps anything of img:
// an ImageStatus by tag or digest, an image record naming its repository
// or digest, its manifest or config blob.
func (e sigEnv) holds(t *testing.T, img sigImage) bool {
	t.Helper()
	ctx := ctxT(t, time.Minute)
	found := false
	for _, r := range []string{img.Ref, img.DigestRef()} {
		st, err := e.Images.ImageStatus(ctx, spec(r), false)
		if err != nil {
			t.Fatalf("ImageStatus %s: %v", r, err)
		}
		if st.GetImage() != nil {
			t.Logf("ImageStatus %s: %s", r, st.GetImage().GetId())
			found = true
		}
	}
	for _, n := range containerdImages(t, e.AccelCRI) {
		if strings.HasPrefix(n, img.Repo+":") || strings.HasPrefix(n, img.Repo+"@") || strings.Contains(n, img.Digest) {
			t.Logf("containerd image record %s", n)
			found = true
		}
	}
	c, err := containerd.New(filepath.Join(e.State, "containerd", "containerd.sock"), containerd.WithDefaultNamespace("accel-cri"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, d := range []string{img.Digest, img.Config} {
		_, err := c.ContentStore().Info(ctx, digest.Digest(d))
		switch {
		case err == nil:
			t.Logf("containerd content store holds %s", d)
			found = true
		case !errdefs.IsNotFound(err):
			t.Fatalf("content info %s: %v", d, err)
		}
	}
	return found
}

// runIn runs echo in img in a new pod of ns and wants it to exit 0 with
// its output logged.
func (e sigEnv) runIn(t *testing.T, img, ns string) {
	t.Helper()
	ctx := ctxT(t, 2*time.Minute)
	pod := e.podIn(t, "run", ns)
	podID, err := e.Runtime.RunPodSandbox(ctx, pod, "")
	if err != nil {
		t.Fatalf("RunPodSandbox in %s: %v", ns, err)
	}
	t.Cleanup(func() { e.removePod(t, podID) })
	c := framework.ContainerConfig("echo", img, "echo", "signed-and-running")
	id := e.RunContainer(t, podID, pod, c)
	st := e.WaitContainer(t, id, exited, time.Minute)
	log := framework.LogContent(t, logPath(pod, c))
	if st.ExitCode != 0 || !strings.Contains(log, "signed-and-running") {
		t.Fatalf("%s in %s exited %d (%s %s), log %q", img, ns, st.ExitCode, st.Reason, st.Message, log)
	}
}

func (e sigEnv) removePod(t *testing.T, podID string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.Runtime.StopPodSandbox(ctx, podID); err != nil {
		t.Errorf("StopPodSandbox: %v", err)
	}
	if err := e.Runtime.RemovePodSandbox(ctx, podID); err != nil {
		t.Errorf("RemovePodSandbox: %v", err)
	}
}

// TestSignaturePolicy: accel-cri with a default policy that accepts
// anything and per-namespace policies that want sigstore signatures of a
// key the test made, checked at PullImage and again at CreateContainer,
// against a real registry holding cosign signatures in both formats
// (legacy .sig tags and sigstore bundles as OCI referrers, by the
// referrers tag scheme: docker-registry 2.8 has no referrers API).
//
// Signed images pull and run in the policy's namespace; an unsigned one,
// one signed with another key, one whose signature names another
// repository, and a signed image's very digest pushed to a repository
// without signatures are refused (code Unknown, SignatureValidationFailed,
// the reason) and nothing of them is kept. Without a file for its
// namespace a pod gets the default policy. An image pulled for another
// namespace is checked again when a container (by reference, by id as
// kubelet sends it, or as an image volume) is created in the policy's
// namespace. Policy files written, broken (fail closed), fixed and removed
// while accel-cri runs take effect at the next pull. Malformed signatures
// and a policy naming a missing key are refused with their precise
// reasons. The metric counts each decision exactly.
func TestSignaturePolicy(t *testing.T) {
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	imgs := framework.PushTestImages(t, reg, "library/")
	ctx := ctxT(t, 10*time.Minute)
	opts := reg.RemoteOptions(ctx)
	host := reg.Host()

	base, err := testimages.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	built := map[string]v1.Image{}
	variant := func(name string) sigImage {
		img, cfg := buildVariant(t, base, name)
		built[name] = img
		return pushImage(t, ctx, reg, img, name, cfg)
	}
	trusted, err := sigtest.NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	other, err := sigtest.NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	legacy := variant("signed-legacy/app")
	bundle := variant("signed-bundle/app")
	late := variant("signed-late/app")
	unsigned := variant("unsigned/app")
	otherKey := variant("otherkey/app")
	wrongID := variant("wrongid/app")
	for _, im := range []sigImage{legacy, late} {
		if err := trusted.SignLegacy(ctx, im.Repo, im.Digest, "", opts...); err != nil {
			t.Fatal(err)
		}
	}
	if err := trusted.SignBundle(ctx, bundle.Repo, bundle.Digest, opts...); err != nil {
		t.Fatal(err)
	}
	if err := other.SignLegacy(ctx, otherKey.Repo, otherKey.Digest, "", opts...); err != nil {
		t.Fatal(err)
	}
	if err := other.SignBundle(ctx, otherKey.Repo, otherKey.Digest, opts...); err != nil {
		t.Fatal(err)
	}
	// Signed by the trusted key, for the digest it names, but as
	// signed-legacy/app: matchRepository wants wrongid/app.
	if err := trusted.SignLegacy(ctx, wrongID.Repo, wrongID.Digest, legacy.Repo, opts...); err != nil {
		t.Fatal(err)
	}
	// legacy's very image (same digest) in a repository holding no
	// signature: signatures are looked up where the image is pulled from.
	copied := pushImage(t, ctx, reg, built["signed-legacy/app"], "unsigned-copy/app", legacy.Config)
	if copied.Digest != legacy.Digest {
		t.Fatalf("the copy's digest %s is not legacy's %s", copied.Digest, legacy.Digest)
	}

	dir := t.TempDir()
	keyPath, err := trusted.WritePublicKey(dir, "trusted.pub")
	if err != nil {
		t.Fatal(err)
	}
	policyDir := filepath.Join(dir, "policy.d")
	if err := os.Mkdir(policyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	defaultPolicy := filepath.Join(dir, "policy.json")
	writePolicy(t, defaultPolicy, `{"default": [{"type": "insecureAcceptAnything"}]}`)
	suffix := fmt.Sprintf("%x", time.Now().UnixNano()&0xffffff)
	signedNS, freeNS := "signed-only-"+suffix, "free-"+suffix
	writePolicy(t, filepath.Join(policyDir, signedNS+".json"), signedOnlyPolicy(host, keyPath))

	port, err := framework.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	a := framework.StartAccelCRI(t, framework.AccelCRIOptions{
		SandboxImage: imgs.Pause.Ref,
		Config:       fmt.Sprintf("signature_policy = %q\nsignature_policy_dir = %q\n", defaultPolicy, policyDir),
		ExtraArgs:    []string{"--metrics-address", fmt.Sprintf("127.0.0.1:%d", port)},
	})
	e := sigEnv{AccelCRI: a}

	// What the cases below expect the metrics to have counted: each
	// refused() is two pulls (its own and kubelet's client's). Pulls of
	// the default policy (accepted) are not counted here: accel-cri may
	// pull its sandbox image too.
	var verified, rejected, failed, createVerified, createRejected int

	t.Run("legacy-signed", func(t *testing.T) {
		e.mustPull(t, legacy.Ref, signedNS)
		verified++
		e.runIn(t, legacy.Ref, signedNS)
		createVerified++ // from the cache of the pull's decision
	})

	t.Run("bundle-signed", func(t *testing.T) {
		e.mustPull(t, bundle.Ref, signedNS)
		verified++
		e.runIn(t, bundle.Ref, signedNS)
		createVerified++
	})

	t.Run("unsigned", func(t *testing.T) {
		before := containerdImages(t, a)
		msg := e.refused(t, unsigned, signedNS, "no signature", unsigned.Digest)
		rejected += 2 // rawPull and kubelet's client
		if !strings.Contains(msg, unsigned.Repo) {
			t.Errorf("refusal does not name the image %s: %s", unsigned.Repo, msg)
		}
		if !strings.Contains(msg, signedNS+".json") {
			t.Errorf("refusal does not name the policy file %s.json: %s", signedNS, msg)
		}
		if after := containerdImages(t, a); !slices.Equal(before, after) {
			t.Errorf("image records changed:\nbefore %v\nafter  %v", before, after)
		}
	})

	t.Run("same-digest-unsigned-repository", func(t *testing.T) {
		// legacy's digest was verified above, in its own repository.
		e.refused(t, copied, signedNS, "no signature")
		rejected += 2
	})

	t.Run("other-key", func(t *testing.T) {
		e.refused(t, otherKey, signedNS, "not signed by a trusted key")
		rejected += 2
	})

	t.Run("wrong-identity", func(t *testing.T) {
		e.refused(t, wrongID, signedNS, "identity")
		rejected += 2
	})

	t.Run("no-policy-namespace", func(t *testing.T) {
		// No <dir>/free-*.json: the default policy, which accepts anything.
		id := e.mustPull(t, unsigned.Ref, freeNS)
		st, err := a.Images.ImageStatus(ctx, spec(unsigned.Ref), false)
		if err != nil || st.GetImage().GetId() != id {
			t.Fatalf("ImageStatus %s after the pull = %v, %v; want id %s", unsigned.Ref, st.GetImage(), err, id)
		}
		e.runIn(t, unsigned.Ref, freeNS)
	})

	t.Run("create-recheck", func(t *testing.T) {
		// unsigned is in the store (pulled for a pod of freeNS); a pod of
		// signedNS may not run it.
		pod := e.podIn(t, "recheck", signedNS)
		podID, err := a.Runtime.RunPodSandbox(ctx, pod, "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.removePod(t, podID) })
		ctrsBefore := containerdContainers(t, a)
		_, err = a.Runtime.CreateContainer(ctx, podID, framework.ContainerConfig("unsigned", unsigned.Ref, "echo", "must not run"), pod)
		if err == nil || !strings.Contains(err.Error(), "SignatureValidationFailed") || !strings.Contains(err.Error(), "no signature") {
			t.Fatalf("CreateContainer of an unsigned image in %s: %v, want SignatureValidationFailed ... no signature", signedNS, err)
		}
		createRejected++
		t.Logf("refused: %v", err)
		ctrs, err := a.Runtime.ListContainers(ctx, &runtimeapi.ContainerFilter{PodSandboxId: podID})
		if err != nil || len(ctrs) != 0 {
			t.Errorf("pod's containers after the refusal: %v, %v; want none", ctrs, err)
		}
		if after := containerdContainers(t, a); !slices.Equal(ctrsBefore, after) {
			t.Errorf("containerd containers changed:\nbefore %v\nafter  %v", ctrsBefore, after)
		}
		// By digest and by image id the same.
		id := e.mustPull(t, unsigned.Ref, freeNS)
		for _, r := range []string{unsigned.DigestRef(), id} {
			_, err = a.Runtime.CreateContainer(ctx, podID, framework.ContainerConfig("unsigned-by-id", r, "echo", "must not run"), pod)
			if err == nil || !strings.Contains(err.Error(), "SignatureValidationFailed") {
				t.Errorf("CreateContainer of %s in %s: %v, want SignatureValidationFailed", r, signedNS, err)
			}
			createRejected++
		}

		// late is signed, pulled for a pod of freeNS only (nothing verified
		// it yet): the create verifies it, and it runs.
		e.mustPull(t, late.Ref, freeNS)
		c := framework.ContainerConfig("late", late.Ref, "echo", "signed-and-running")
		id = e.RunContainer(t, podID, pod, c)
		createVerified++
		st := e.WaitContainer(t, id, exited, time.Minute)
		if log := framework.LogContent(t, logPath(pod, c)); st.ExitCode != 0 || !strings.Contains(log, "signed-and-running") {
			t.Fatalf("late exited %d, log %q", st.ExitCode, log)
		}
	})

	t.Run("kubelet-style-create", func(t *testing.T) {
		// kubelet names the image by its id and the pod's image in
		// user_specified_image: the check goes by the latter.
		pod := e.podIn(t, "kubelet-style", signedNS)
		podID, err := a.Runtime.RunPodSandbox(ctx, pod, "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.removePod(t, podID) })
		byID := func(name, ref string) *runtimeapi.ContainerConfig {
			st, err := a.Images.ImageStatus(ctx, spec(ref), false)
			if err != nil || st.GetImage() == nil {
				t.Fatalf("ImageStatus %s: %v, %v", ref, st.GetImage(), err)
			}
			c := framework.ContainerConfig(name, st.GetImage().GetId(), "echo", "signed-and-running")
			c.Image.UserSpecifiedImage = ref
			return c
		}
		if _, err := a.Runtime.CreateContainer(ctx, podID, byID("unsigned", unsigned.Ref), pod); err == nil ||
			!strings.Contains(err.Error(), "SignatureValidationFailed") || !strings.Contains(err.Error(), unsigned.Repo) {
			t.Errorf("CreateContainer of unsigned by id: %v, want SignatureValidationFailed naming %s", err, unsigned.Repo)
		}
		createRejected++
		c := byID("late", late.Ref)
		id := e.RunContainer(t, podID, pod, c)
		createVerified++ // cached since create-recheck
		if st := e.WaitContainer(t, id, exited, time.Minute); st.ExitCode != 0 {
			t.Fatalf("late by id exited %d", st.ExitCode)
		}
	})

	t.Run("image-volume", func(t *testing.T) {
		// An image volume's image is checked like the container's.
		pod := e.podIn(t, "imagevolume", signedNS)
		podID, err := a.Runtime.RunPodSandbox(ctx, pod, "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.removePod(t, podID) })
		withVolume := func(name, volume string) *runtimeapi.ContainerConfig {
			c := framework.ContainerConfig(name, legacy.Ref, "sh", "-c", "test -x /vol/bin/busybox && echo volume-mounted")
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/vol", Image: spec(volume), Readonly: true}}
			return c
		}
		ctrsBefore := containerdContainers(t, a)
		_, err = a.Runtime.CreateContainer(ctx, podID, withVolume("unsigned-volume", unsigned.Ref), pod)
		if err == nil || !strings.Contains(err.Error(), "SignatureValidationFailed") || !strings.Contains(err.Error(), "image volume") ||
			!strings.Contains(err.Error(), "no signature") {
			t.Fatalf("CreateContainer with an unsigned image volume in %s: %v, want SignatureValidationFailed ... image volume ... no signature", signedNS, err)
		}
		t.Logf("refused: %v", err)
		createVerified++ // the container's own image, before its volume
		createRejected++
		if after := containerdContainers(t, a); !slices.Equal(ctrsBefore, after) {
			t.Errorf("containerd containers changed:\nbefore %v\nafter  %v", ctrsBefore, after)
		}
		c := withVolume("signed-volume", bundle.Ref)
		id := e.RunContainer(t, podID, pod, c)
		createVerified += 2
		st := e.WaitContainer(t, id, exited, time.Minute)
		if log := framework.LogContent(t, logPath(pod, c)); st.ExitCode != 0 || !strings.Contains(log, "volume-mounted") {
			t.Fatalf("signed-volume exited %d, log %q", st.ExitCode, log)
		}
	})

	t.Run("reload", func(t *testing.T) {
		ns := "reload-" + suffix
		file := filepath.Join(policyDir, ns+".json")
		t.Cleanup(func() { os.Remove(file) })
		// No file yet: the default policy.
		e.mustPull(t, otherKey.Ref, ns)
		// The file appears while accel-cri runs: the next pull follows it.
		writePolicy(t, file, signedOnlyPolicy(host, keyPath))
		e.refused(t, otherKey, ns, "not signed by a trusted key", ns+".json")
		rejected += 2
		e.mustPull(t, legacy.Ref, ns)
		verified++
		// Broken: fail closed, for signed images too.
		writePolicy(t, file, `{"default": [{"type": "insecureAcceptAnything"}`)
		for _, im := range []sigImage{otherKey, legacy} {
			e.refused(t, im, ns, "policy file", file)
			failed += 2
		}
		// Fixed (replaced by rename, as configuration managers write).
		tmp := file + ".tmp"
		writePolicy(t, tmp, signedOnlyPolicy(host, keyPath))
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
		e.mustPull(t, legacy.Ref, ns)
		verified++
		e.refused(t, otherKey, ns, "not signed by a trusted key")
		rejected += 2
		// Removed: the default policy again.
		if err := os.Remove(file); err != nil {
			t.Fatal(err)
		}
		e.mustPull(t, otherKey.Ref, ns)
	})

	t.Run("bad-input", func(t *testing.T) {
		ns := "badinput-" + suffix
		key := newRawKey(t)
		rawKeyPath := key.writePublic(t, filepath.Join(dir, "raw.pub"))
		writePolicy(t, filepath.Join(policyDir, ns+".json"), signedOnlyPolicy(host, rawKeyPath))
		before := containerdImages(t, a)

		cases := []struct {
			desc  string
			push  func(t *testing.T, im sigImage)
			wants []string
		}{
			{
				desc: "legacy payload not JSON, signed by the trusted key",
				push: func(t *testing.T, im sigImage) {
					payload := []byte("this is not a simple-signing payload")
					if err := sigtest.PushLegacyRaw(ctx, im.Repo, im.Digest, payload, key.sign(t, payload), opts...); err != nil {
						t.Fatal(err)
					}
				},
				wants: []string{"no usable signature", "payload: invalid character", "malformed signature"},
			},
			{
				desc: "legacy signature truncated",
				push: func(t *testing.T, im sigImage) {
					payload := sigtest.LegacyPayload(im.Repo, im.Digest)
					sig := key.sign(t, payload)
					raw, _ := base64.StdEncoding.DecodeString(sig)
					if err := sigtest.PushLegacyRaw(ctx, im.Repo, im.Digest, payload, base64.StdEncoding.EncodeToString(raw[:len(raw)/2]), opts...); err != nil {
						t.Fatal(err)
					}
				},
				wants: []string{"1 signature(s) checked: not signed by a trusted key", rawKeyPath},
			},
			{
				desc: "legacy payload truncated",
				push: func(t *testing.T, im sigImage) {
					payload := sigtest.LegacyPayload(im.Repo, im.Digest)
					payload = payload[:len(payload)/2]
					if err := sigtest.PushLegacyRaw(ctx, im.Repo, im.Digest, payload, key.sign(t, payload), opts...); err != nil {
						t.Fatal(err)
					}
				},
				wants: []string{"no usable signature", "payload: unexpected EOF", "malformed signature"},
			},
			{
				desc: "legacy signature of another digest",
				push: func(t *testing.T, im sigImage) {
					payload := sigtest.LegacyPayload(im.Repo, legacy.Digest)
					if err := sigtest.PushLegacyRaw(ctx, im.Repo, im.Digest, payload, key.sign(t, payload), opts...); err != nil {
						t.Fatal(err)
					}
				},
				wants: []string{"none for digest", "payload signs " + legacy.Digest + ", not "},
			},
			{
				desc: "legacy signature not base64",
				push: func(t *testing.T, im sigImage) {
					payload := sigtest.LegacyPayload(im.Repo, im.Digest)
					if err := sigtest.PushLegacyRaw(ctx, im.Repo, im.Digest, payload, "%%% not base64 %%%", opts...); err != nil {
						t.Fatal(err)
					}
				},
				wants: []string{"no usable signature", "signature annotation: illegal base64", "malformed signature"},
			},
			{
				desc: "bundle not JSON",
				push: func(t *testing.T, im sigImage) {
					if err := sigtest.PushBundleRaw(ctx, im.Repo, im.Digest, []byte("{ not a bundle"), opts...); err != nil {
						t.Fatal(err)
					}
				},
				wants: []string{"no usable signature", "bundle: ", "malformed signature"},
			},
			{
				desc: "bundle an empty JSON object",
				push: func(t *testing.T, im sigImage) {
					if err := sigtest.PushBundleRaw(ctx, im.Repo, im.Digest, []byte("{}"), opts...); err != nil {
						t.Fatal(err)
					}
				},
				wants: []string{"no usable signature", "bundle: ", "malformed signature"},
			},
		}
		for i, tc := range cases {
			t.Run(tc.desc, func(t *testing.T) {
				im := variant(fmt.Sprintf("bad/%d", i))
				tc.push(t, im)
				e.refused(t, im, ns, tc.wants...)
				rejected += 2
				if !a.Running() {
					t.Fatalf("accel-cri exited:\n%s", a.LogTail(30))
				}
			})
		}

		t.Run("policy whose key file is missing", func(t *testing.T) {
			ns := "missingkey-" + suffix
			absent := filepath.Join(dir, "absent.pub")
			writePolicy(t, filepath.Join(policyDir, ns+".json"), signedOnlyPolicy(host, absent))
			im := variant("bad/missing-key")
			if err := trusted.SignLegacy(ctx, im.Repo, im.Digest, "", opts...); err != nil {
				t.Fatal(err)
			}
			e.refused(t, im, ns, "policy file", absent)
			failed += 2
		})

		if after := containerdImages(t, a); !slices.Equal(before, after) {
			t.Errorf("image records changed by refused pulls:\nbefore %v\nafter  %v", before, after)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		mfs := scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
		const name = "accel_cri_image_signature_verifications_total"
		checkSamples(t, mfs, []want{
			{name: name, labels: l("phase", "pull", "result", "verified"), value: float64(verified)},
			{name: name, labels: l("phase", "pull", "result", "rejected"), value: float64(rejected)},
			{name: name, labels: l("phase", "pull", "result", "error"), value: float64(failed)},
			// The pulls for pods of freeNS and of the reload namespace
			// without its file, at least.
			{name: name, labels: l("phase", "pull", "result", "accepted"), value: 5, atLeast: true},
			{name: name, labels: l("phase", "create", "result", "verified"), value: float64(createVerified)},
			{name: name, labels: l("phase", "create", "result", "rejected"), value: float64(createRejected)},
			// unsigned run in a pod of freeNS.
			{name: name, labels: l("phase", "create", "result", "accepted"), value: 1},
		})
		var b strings.Builder
		for _, m := range mfs[name].GetMetric() {
			for _, lp := range m.GetLabel() {
				fmt.Fprintf(&b, " %s=%s", lp.GetName(), lp.GetValue())
			}
			fmt.Fprintf(&b, ": %v;", m.GetCounter().GetValue())
		}
		t.Logf("%s:%s", name, b.String())
	})

	// After the metrics: its pulls are not in their counts.
	t.Run("credentials", func(t *testing.T) {
		// A registry that wants credentials for every request, signature
		// tags and referrers included: signatures are read with the pull's
		// own CRI credentials.
		authReg := framework.StartRegistry(t, framework.RegistryOptions{Username: "sig", Password: "s3cret"})
		im := pushImage(t, ctx, authReg, built["signed-legacy/app"], "private/app", legacy.Config)
		aopts := authReg.RemoteOptions(ctx)
		if err := trusted.SignLegacy(ctx, im.Repo, im.Digest, "", aopts...); err != nil {
			t.Fatal(err)
		}
		if err := trusted.SignBundle(ctx, im.Repo, im.Digest, aopts...); err != nil {
			t.Fatal(err)
		}
		ns := "private-" + suffix
		writePolicy(t, filepath.Join(policyDir, ns+".json"), signedOnlyPolicy(authReg.Host(), keyPath))
		auth := &runtimeapi.AuthConfig{Username: authReg.Username, Password: authReg.Password}
		if _, err := e.Images.PullImage(ctxT(t, 2*time.Minute), spec(im.Ref), auth, e.podIn(t, "puller", ns)); err != nil {
			t.Fatalf("pull %s with credentials: %v\n%s", im.Ref, err, e.LogTail(20))
		}
		// Without them the registry refuses the pull itself.
		if _, err := e.Images.PullImage(ctxT(t, 2*time.Minute), spec(im.Ref), nil, e.podIn(t, "puller", ns)); status.Code(err) != codes.Unauthenticated {
			t.Errorf("pull without credentials: %v, want Unauthenticated", err)
		}
		// Verified at its pull under this policy: CreateContainer does not
		// fetch again (it has no credentials, and would be refused).
		e.runIn(t, im.Ref, ns)
	})

	t.Run("mirror", func(t *testing.T) {
		// Images named after a registry that is only a name here, served
		// by a hosts.toml mirror (and server) on the test's registry:
		// signatures are found through the same hosts as the image.
		const upstream = "signed.accel-cri.test"
		hd := filepath.Join(a.RegistryConfDir, upstream)
		if err := os.MkdirAll(hd, 0o755); err != nil {
			t.Fatal(err)
		}
		writePolicy(t, filepath.Join(hd, "hosts.toml"), fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", "http://"+host, "http://"+host))
		signed, bare := variant("mirrored/app"), variant("mirrored/bare")
		if err := trusted.SignLegacy(ctx, signed.Repo, signed.Digest, upstream+"/mirrored/app", opts...); err != nil {
			t.Fatal(err)
		}
		ns := "mirror-" + suffix
		writePolicy(t, filepath.Join(policyDir, ns+".json"), signedOnlyPolicy(upstream, keyPath))
		ref := upstream + "/mirrored/app:latest"
		e.mustPull(t, ref, ns)
		e.runIn(t, ref, ns)
		e.refused(t, sigImage{Repo: upstream + "/mirrored/bare", Ref: upstream + "/mirrored/bare:latest", Digest: bare.Digest, Config: bare.Config}, ns, "no signature")
	})
}
