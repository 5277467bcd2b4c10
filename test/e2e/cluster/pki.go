package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// pki is the cluster's certificates and keys as kubeadm lays them out
// (/etc/kubernetes/pki): a cluster CA, an etcd CA and a front-proxy CA, the
// leaf certificates of each component, and the service-account key pair.
type pki struct {
	dir                    string
	ca, etcdCA, frontProxy *framework.CA
	// admin is kubernetes-admin (system:masters), what the tests use;
	// etcdClient the API server's etcd client certificate.
	admin, etcdClient framework.Issued
}

// path returns a file of the pki dir.
func (p *pki) path(name string) string { return filepath.Join(p.dir, name) }

var loopback = []net.IP{net.ParseIP("127.0.0.1")}

func newPKI(t testing.TB, dir string) *pki {
	t.Helper()
	p := &pki{dir: dir}
	if err := os.MkdirAll(filepath.Join(dir, "etcd"), 0o700); err != nil {
		t.Fatal(err)
	}
	p.ca = framework.NewCA(t, "kubernetes")
	p.etcdCA = framework.NewCA(t, "etcd-ca")
	p.frontProxy = framework.NewCA(t, "front-proxy-ca")
	for name, ca := range map[string]*framework.CA{"ca": p.ca, "etcd/ca": p.etcdCA, "front-proxy-ca": p.frontProxy} {
		framework.WriteFile(t, p.path(name+".crt"), ca.CertPEM)
		framework.WriteFile(t, p.path(name+".key"), framework.KeyPEM(t, ca.Key))
	}
	server := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	p.etcdClient = p.etcdCA.Issue(t, framework.CertSpec{CommonName: "kube-apiserver-etcd-client", Usages: client})
	p.etcdClient.WriteFiles(t, dir, "apiserver-etcd-client")
	for _, c := range []struct {
		ca   *framework.CA
		name string
		spec framework.CertSpec
	}{
		{p.ca, "apiserver", framework.CertSpec{CommonName: "kube-apiserver", Usages: server,
			IPs:      []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(kubernetesServiceIP)},
			DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}}},
		// kubeadm's group is kubeadm:cluster-admins, bound by kubeadm
		// itself; system:masters needs no binding.
		{p.ca, "apiserver-kubelet-client", framework.CertSpec{CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}, Usages: client}},
		{p.etcdCA, "etcd/server", framework.CertSpec{CommonName: "etcd", Usages: both, IPs: loopback, DNSNames: []string{"localhost"}}},
		{p.etcdCA, "etcd/peer", framework.CertSpec{CommonName: "etcd", Usages: both, IPs: loopback, DNSNames: []string{"localhost"}}},
		{p.frontProxy, "front-proxy-client", framework.CertSpec{CommonName: "front-proxy-client", Usages: client}},
	} {
		c.ca.Issue(t, c.spec).WriteFiles(t, dir, c.name)
	}
	// The service-account token signing key (ES256) and its public half.
	sa, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&sa.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	framework.WriteFile(t, p.path("sa.key"), framework.KeyPEM(t, sa))
	framework.WriteFile(t, p.path("sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
	p.admin = p.ca.Issue(t, framework.CertSpec{CommonName: "kubernetes-admin", Organization: []string{"system:masters"}, Usages: client})
	return p
}

// kubeconfig writes a kubeconfig for user (certificate CN) in orgs, issued
// by the cluster CA, talking to server, as kubeadm's admin.conf,
// controller-manager.conf, scheduler.conf and kubelet.conf are.
func (p *pki) kubeconfig(t testing.TB, path, server, user string, orgs ...string) framework.Issued {
	t.Helper()
	c := p.ca.Issue(t, framework.CertSpec{CommonName: user, Organization: orgs, Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	p.writeKubeconfig(t, path, server, user, c)
	return c
}

func (p *pki) writeKubeconfig(t testing.TB, path, server, user string, c framework.Issued) {
	t.Helper()
	b64 := base64.StdEncoding.EncodeToString
	framework.WriteFile(t, path, fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: kubernetes
  cluster:
    server: %s
    certificate-authority-data: %s
contexts:
- name: %s@kubernetes
  context:
    cluster: kubernetes
    user: %s
current-context: %s@kubernetes
users:
- name: %s
  user:
    client-certificate-data: %s
    client-key-data: %s
`, server, b64(p.ca.CertPEM), user, user, user, user, b64(c.CertPEM), b64(c.KeyPEM)))
}
