package critest

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func spec(state, msg string, texts ...string) specReport {
	s := specReport{ContainerHierarchyTexts: texts[:len(texts)-1], LeafNodeText: texts[len(texts)-1], LeafNodeType: "It", State: state}
	s.Failure.Message = msg
	return s
}

// allSkipped is one spec for each skip entry, skipped by the table.
func allSkipped() []specReport {
	return []specReport{
		spec("skipped", "", "[k8s.io] AppArmor", "runtime should support apparmor field", "should fail with an unloaded apparmor_profile"),
		spec("skipped", "", "[k8s.io] Image Manager", "public image with digest should be pulled and removed [Conformance]"),
	}
}

func TestJudge(t *testing.T) {
	for _, tc := range []struct {
		desc                  string
		specs                 []specReport
		focused               bool
		total, passed         int
		failed, skipped, self int
		problems              []string // substrings, one per problem
	}{
		{
			desc:  "all pass but the skip table",
			specs: append(allSkipped(), spec("passed", "", "[k8s.io] Container", "runtime should support creating container")),
			total: 3, passed: 1, skipped: 2,
		},
		{
			desc: "a failure is reported with its message",
			specs: append(allSkipped(), spec("failed", "Expected\n  <int>: 1\nto equal 2", "[k8s.io] PodSandbox", "should support metrics"),
				spec("timedout", "", "[k8s.io] Streaming", "portforward"), spec("panicked", "boom", "[k8s.io] X", "y")),
			total: 5, failed: 3, skipped: 2,
		},
		{
			desc:  "critest's own skip of a spec is a problem",
			specs: append(allSkipped(), spec("skipped", "Image Volumes are not supported", "[k8s.io] Image Volume [Feature:ImageVolume]", "should mount")),
			total: 3, skipped: 2, self: 1,
			problems: []string{`skipped "[k8s.io] Image Volume [Feature:ImageVolume] should mount" by itself (Image Volumes are not supported)`},
		},
		{
			desc:  "benchmarks are not part of the validation run",
			specs: append(allSkipped(), spec("skipped", "", "[k8s.io] PodSandbox", "benchmark about operations on PodSandbox", "benchmark about lifecycle")),
			total: 2, skipped: 2,
		},
		{
			desc:  "an unknown state is a problem",
			specs: append(allSkipped(), spec("pending", "", "[k8s.io] X", "y")),
			total: 3, skipped: 2,
			problems: []string{`"[k8s.io] X y" ended in state "pending"`},
		},
		{
			desc:  "a skip entry that matches nothing is a problem",
			specs: allSkipped()[:1],
			total: 1, skipped: 1,
			problems: []string{`public image with digest should be pulled and removed" matches no spec`},
		},
		{
			desc:    "focused: specs out of focus are not counted, unused entries are fine",
			specs:   []specReport{spec("passed", "", "[k8s.io] Networking", "dns"), spec("skipped", "", "[k8s.io] Container", "create")},
			focused: true, total: 1, passed: 1,
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			res := judge(tc.specs, tc.focused)
			if res.total != tc.total || res.passed != tc.passed || len(res.failed) != tc.failed || len(res.skipped) != tc.skipped || res.selfSkipped != tc.self {
				t.Errorf("judge = %s, want total %d passed %d failed %d skipped %d self-skipped %d", res.summary(), tc.total, tc.passed, tc.failed, tc.skipped, tc.self)
			}
			rep := res.report(time.Minute)
			if !strings.HasPrefix(rep, "critest v"+critestVersion+" against accel-cri (1m0s): "+res.summary()+"\n") || strings.Count(rep, "FAILED: ") != tc.failed {
				t.Errorf("report:\n%s", rep)
			}
			if len(res.problems) != len(tc.problems) {
				t.Fatalf("problems %q, want %d", res.problems, len(tc.problems))
			}
			for i, p := range tc.problems {
				if !strings.Contains(res.problems[i], p) {
					t.Errorf("problem %q lacks %q", res.problems[i], p)
				}
			}
			for _, f := range res.failed {
				if !strings.Contains(f.detail, "state ") {
					t.Errorf("failure detail %q lacks its state", f.detail)
				}
			}
		})
	}
}

func TestSkipEntries(t *testing.T) {
	for _, s := range skips {
		if _, err := regexp.Compile(s.spec); err != nil {
			t.Errorf("skip %q: %v", s.spec, err)
		}
		if len(s.reason) < 20 {
			t.Errorf("skip %q: give a reason", s.spec)
		}
	}
}

func TestReadReport(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "report.json")
	// The shape of ginkgo's JSON report: one entry per suite; BeforeSuite
	// and AfterSuite nodes are not specs.
	report := `[{"SuiteDescription":"CRI validation","SpecReports":[
 {"LeafNodeType":"BeforeSuite","State":"passed"},
 {"ContainerHierarchyTexts":["[k8s.io] Runtime info","runtime should support returning runtime info"],"LeafNodeType":"It",
  "LeafNodeText":"runtime should return version info [Conformance]","State":"passed","RunTime":1500000},
 {"ContainerHierarchyTexts":["[k8s.io] PodSandbox"],"LeafNodeType":"It","LeafNodeText":"x","State":"failed",
  "Failure":{"Message":"boom","Location":{"FileName":"pod.go","LineNumber":7}}}]}]`
	if err := os.WriteFile(p, []byte(report), 0o644); err != nil {
		t.Fatal(err)
	}
	specs, err := readReport(p)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range specs {
		names = append(names, s.name())
	}
	want := []string{"[k8s.io] Runtime info runtime should support returning runtime info runtime should return version info [Conformance]", "[k8s.io] PodSandbox x"}
	if !slices.Equal(names, want) {
		t.Errorf("names %q, want %q", names, want)
	}
	if specs[1].Failure.Message != "boom" || specs[1].Failure.Location.LineNumber != 7 {
		t.Errorf("failure %+v", specs[1].Failure)
	}
	if err := os.WriteFile(p, []byte(`[{"SpecReports":[]}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readReport(p); err == nil {
		t.Error("a report without specs was accepted")
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{`/a\040b`: "/a b", `/plain`: "/plain", `/tab\011x\134`: "/tab\tx\\", `/odd\0`: `/odd\0`} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMirrorHostsTOML(t *testing.T) {
	got := mirrorHostsTOML("registry.k8s.io", "127.0.0.1:5000")
	for _, want := range []string{`server = "http://127.0.0.1:1"`, `[host."http://127.0.0.1:5000/v2/registry.k8s.io"]`, `override_path = true`, `capabilities = ["pull", "resolve"]`} {
		if !strings.Contains(got, want) {
			t.Errorf("hosts.toml lacks %q:\n%s", want, got)
		}
	}
}

func TestCritestEnv(t *testing.T) {
	t.Setenv("HTTP_PROXY", "http://proxy:3128")
	t.Setenv("no_proxy", "x")
	t.Setenv("TMPDIR", "/elsewhere")
	env := critestEnv("/tmp/w/tmp")
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if strings.EqualFold(k, "http_proxy") || strings.EqualFold(k, "no_proxy") || kv == "TMPDIR=/elsewhere" {
			t.Errorf("%s kept", kv)
		}
	}
	if !slices.Contains(env, "TMPDIR=/tmp/w/tmp") {
		t.Error("TMPDIR not set")
	}
}
