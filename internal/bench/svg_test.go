package bench

import (
	"encoding/xml"
	"io"
	"strings"
	"testing"
)

// svgDoc is what the test reads back from the chart.
type svgDoc struct {
	XMLName xml.Name `xml:"svg"`
	Width   int      `xml:"width,attr"`
	Height  int      `xml:"height,attr"`
	Texts   []string `xml:"text"`
	Groups  []struct {
		Class string `xml:"class,attr"`
		Title string `xml:"title"`
		Rects []struct {
			Width float64 `xml:"width,attr"`
		} `xml:"rect"`
		Lines []struct{} `xml:"line"`
	} `xml:"g"`
}

func parseSVG(t *testing.T, s string) svgDoc {
	t.Helper()
	// Every token must decode: well-formed XML.
	dec := xml.NewDecoder(strings.NewReader(s))
	for {
		if _, err := dec.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v\n%s", err, s)
		}
	}
	var doc svgDoc
	if err := xml.Unmarshal([]byte(s), &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestComparisonChart(t *testing.T) {
	c := Compare([]Round{{A: result("accel-cri <new>", 80, 5, 1, map[string]uint64{"accel-cri": MiB, "shims": MiB}),
		B: result("containerd & CRI", 100, 4, 3, map[string]uint64{"containerd": MiB, "shims": MiB})}}, "accel-cri")
	var b strings.Builder
	if err := WriteSVG(&b, ComparisonChart(c)); err != nil {
		t.Fatal(err)
	}
	doc := parseSVG(t, b.String())
	// 2 concurrencies × 8 phases + 4 List calls, one bar group per series.
	rows := 2*len(Phases) + len(ListOps)
	count := map[string]int{}
	for _, g := range doc.Groups {
		count[g.Class]++
		if len(g.Rects) != 1 || len(g.Lines) != 3 || g.Rects[0].Width <= 0 {
			t.Errorf("group %q %q: %d bars, %d lines", g.Class, g.Title, len(g.Rects), len(g.Lines))
		}
	}
	if count["series-0"] != rows || count["series-1"] != rows || len(count) != 2 {
		t.Errorf("bar groups per series %v, want %d each for series-0 and series-1", count, rows)
	}
	texts := strings.Join(doc.Texts, "\n")
	for _, want := range []string{"accel-cri <new>", "containerd & CRI", "PodStart c=8", "ListContainerStats, 100 pods", "milliseconds"} {
		if !strings.Contains(texts, want) {
			t.Errorf("chart text lacks %q", want)
		}
	}
	if !strings.Contains(doc.Groups[0].Title, "p50 80.0 ms, p90 160 ms, p99 240 ms") {
		t.Errorf("first bar's title %q lacks its percentiles", doc.Groups[0].Title)
	}
	if doc.Width <= 0 || doc.Height <= 0 {
		t.Errorf("size %dx%d", doc.Width, doc.Height)
	}
}

func TestResultChartAndEmptyChart(t *testing.T) {
	r := result("only", 5, 1, 0.5, map[string]uint64{"shims": MiB})
	var b strings.Builder
	if err := WriteSVG(&b, ResultChart(r)); err != nil {
		t.Fatal(err)
	}
	doc := parseSVG(t, b.String())
	if n := len(doc.Groups); n != 2*len(Phases)+len(ListOps) {
		t.Errorf("%d bar groups, want one per row", n)
	}
	b.Reset()
	if err := WriteSVG(&b, Chart{Title: "nothing", Series: []string{"x"}}); err != nil {
		t.Fatal(err)
	}
	if doc := parseSVG(t, b.String()); len(doc.Groups) != 0 {
		t.Errorf("empty chart has %d bars", len(doc.Groups))
	}
}
