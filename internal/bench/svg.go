package bench

import (
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strings"
)

// Chart is a latency chart: per row (an operation), one bar per series (a
// runtime) from 0 to p50, a whisker from p50 to p99 and a tick at p90, on
// a logarithmic millisecond axis.
type Chart struct {
	Title  string
	Series []string
	Rows   []ChartRow
}

// ChartRow is one operation; Values are indexed like Chart.Series (a zero
// Summary draws nothing).
type ChartRow struct {
	Label  string
	Values []Summary
}

var seriesColors = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"}

// Chart layout in pixels.
const (
	chartWidth  = 860
	labelWidth  = 220
	plotWidth   = chartWidth - labelWidth - 30
	barHeight   = 9
	barGap      = 3
	rowGap      = 10
	headerSpace = 56
	footerSpace = 40
)

// WriteSVG draws the chart as a standalone SVG document.
func WriteSVG(w io.Writer, c Chart) error {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, r := range c.Rows {
		for _, v := range r.Values {
			if v.N == 0 {
				continue
			}
			lo = math.Min(lo, math.Max(v.P50Ms, 1e-3))
			hi = math.Max(hi, v.P99Ms)
		}
	}
	if math.IsInf(lo, 0) {
		lo, hi = 1, 10
	}
	d0, d1 := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if d1 <= d0 {
		d1 = d0 + 1
	}
	x := func(msv float64) float64 {
		l := math.Log10(math.Max(msv, math.Pow(10, d0)))
		return labelWidth + (l-d0)/(d1-d0)*plotWidth
	}
	rowH := len(c.Series)*(barHeight+barGap) + rowGap
	height := headerSpace + len(c.Rows)*rowH + footerSpace
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n",
		chartWidth, height, chartWidth, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", chartWidth, height)
	fmt.Fprintf(&b, `<text x="10" y="18" font-size="14" font-weight="bold">%s</text>`+"\n", esc(c.Title))
	for i, s := range c.Series {
		lx := labelWidth + i*160
		fmt.Fprintf(&b, `<rect x="%d" y="28" width="12" height="10" fill="%s"/><text x="%d" y="37">%s</text>`+"\n", lx, color(i), lx+16, esc(s))
	}
	fmt.Fprintf(&b, `<text x="%d" y="37" fill="#555">bar p50, tick p90, whisker p99 (ms, log scale)</text>`+"\n", labelWidth+len(c.Series)*160)
	plotBottom := headerSpace + len(c.Rows)*rowH
	for dec := d0; dec <= d1; dec++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, dec)
			if dec == d1 && m > 1 {
				break
			}
			px := x(v)
			stroke := "#eeeeee"
			if m == 1 {
				stroke = "#cccccc"
			}
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s"/>`+"\n", px, headerSpace-4, px, plotBottom, stroke)
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#555">%s</text>`+"\n", px, plotBottom+14, tickLabel(v))
		}
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" fill="#555">milliseconds</text>`+"\n", labelWidth+plotWidth/2, plotBottom+30)
	for ri, r := range c.Rows {
		y0 := headerSpace + ri*rowH
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", labelWidth-8, y0+rowH/2, esc(r.Label))
		for si, v := range r.Values {
			if si >= len(c.Series) || v.N == 0 {
				continue
			}
			y := y0 + si*(barHeight+barGap)
			mid := float64(y) + barHeight/2.0
			fmt.Fprintf(&b, `<g class="series-%d"><title>%s %s: p50 %s ms, p90 %s ms, p99 %s ms</title>`, si, esc(c.Series[si]), esc(r.Label), num(v.P50Ms), num(v.P90Ms), num(v.P99Ms))
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`, labelWidth, y, x(v.P50Ms)-labelWidth, barHeight, color(si))
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`, x(v.P50Ms), mid, x(v.P99Ms), mid, color(si))
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-width="2"/>`, x(v.P90Ms), y, x(v.P90Ms), y+barHeight, color(si))
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s"/></g>`+"\n", x(v.P99Ms), y+1, x(v.P99Ms), y+barHeight-1, color(si))
		}
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func color(i int) string { return seriesColors[i%len(seriesColors)] }

func tickLabel(v float64) string {
	if v >= 1 {
		return fmt.Sprintf("%g", math.Round(v))
	}
	return fmt.Sprintf("%g", v)
}

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// ResultChart charts one run: every lifecycle phase per concurrency and
// every steady-state List call.
func ResultChart(r *Result) Chart {
	c := Chart{Title: "CRI latency: " + orDash(r.Label), Series: []string{orDash(r.Label)}}
	for _, l := range r.Lifecycle {
		for _, p := range l.Phases {
			c.Rows = append(c.Rows, ChartRow{Label: fmt.Sprintf("%s c=%d", p.Name, l.Concurrency), Values: []Summary{p.Summary}})
		}
	}
	if s := r.Steady; s != nil {
		for _, o := range s.Ops {
			c.Rows = append(c.Rows, ChartRow{Label: fmt.Sprintf("%s, %d pods", o.Name, s.Pods), Values: []Summary{o.Summary}})
		}
	}
	return c
}

// ComparisonChart charts A against B with the medians over rounds of each
// percentile.
func ComparisonChart(c *Comparison) Chart {
	ch := Chart{Title: fmt.Sprintf("CRI latency: %s vs %s (median of %d rounds)", c.A, c.B, len(c.Rounds)), Series: []string{c.A, c.B}}
	if len(c.Rounds) == 0 {
		return ch
	}
	row := func(label string, key func(pct string) string) {
		var vals [2]Summary
		for _, p := range percentiles {
			m, ok := c.Metric(key(p))
			if !ok {
				return
			}
			for i, v := range []float64{m.MedianA, m.MedianB} {
				if math.IsNaN(v) {
					continue
				}
				vals[i].N = len(c.Rounds)
				switch p {
				case "p50":
					vals[i].P50Ms = v
				case "p90":
					vals[i].P90Ms = v
				case "p99":
					vals[i].P99Ms = v
				}
			}
		}
		ch.Rows = append(ch.Rows, ChartRow{Label: label, Values: vals[:]})
	}
	first := c.Rounds[0].A
	for _, l := range first.Lifecycle {
		for _, ph := range Phases {
			row(fmt.Sprintf("%s c=%d", ph, l.Concurrency), func(p string) string { return PhaseKey(l.Concurrency, ph, p) })
		}
	}
	if s := first.Steady; s != nil {
		for _, op := range ListOps {
			row(fmt.Sprintf("%s, %d pods", op, s.Pods), func(p string) string { return OpKey(op, p) })
		}
	}
	return ch
}
