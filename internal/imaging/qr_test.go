package imaging

import (
	"bytes"
	"encoding/xml"
	"image"
	"image/color"
	"image/png"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const testOAURL = "http://weixin.qq.com/q/02AbCdEfGhIjKlMnOpQrSt"

// longURL is a link code's longest url, 1,024 bytes.
var longURL = "https://shop.example.com/q/" + strings.Repeat("a1", (1024-27)/2) + "b"

// DrawQR draws exactly width pixels square, one bit a pixel with no grey,
// with the quiet zone, and the code scans at every width served and at
// every level.
func TestDrawQR(t *testing.T) {
	t.Parallel()
	for _, level := range []Level{LevelL, LevelM, LevelQ, LevelH} {
		for _, width := range []int{280, 430, 777, 1280} {
			data, err := DrawQR(testOAURL, width, level)
			if err != nil {
				t.Fatal(err)
			}
			cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
			if err != nil || format != "png" || cfg.Width != width || cfg.Height != width {
				t.Errorf("%dpx: decoded %s %dx%d (%v)", width, format, cfg.Width, cfg.Height, err)
			}
			if _, ok := cfg.ColorModel.(color.Palette); !ok || len(cfg.ColorModel.(color.Palette)) != 2 {
				t.Errorf("%dpx: not a 1-bit image", width)
			}
			if got := scan(t, data); got != testOAURL {
				t.Errorf("%s %dpx scans as %q", level, width, got)
			}
			img, _, _ := image.Decode(bytes.NewReader(data))
			// The quiet zone: four modules of at least one pixel all round.
			for i := range 4 {
				if r, _, _, _ := img.At(i, i).RGBA(); r != 0xffff {
					t.Errorf("%dpx: pixel (%d,%d) is not white", width, i, i)
				}
			}
		}
	}
	if _, err := DrawQR(testOAURL, 20, LevelM); err == nil {
		t.Error("a code drawn in 20 pixels, want an error")
	}
}

// The densest code served, the longest url at level H (161 modules),
// scans at the smallest width, one pixel a module.
func TestDrawQRDense(t *testing.T) {
	t.Parallel()
	for _, level := range []Level{LevelM, LevelH} {
		data, err := DrawQR(longURL, 280, level)
		if err != nil {
			t.Fatal(err)
		}
		if got := scan(t, data); got != longURL {
			t.Errorf("%s: the 1,024-byte url at 280px scans as %q", level, got)
		}
	}
}

// The SVG is the requested size, a viewBox in modules with the quiet
// zone, one path of the dark modules with nothing executable or
// external, and its modules, drawn, scan.
func TestDrawQRSVG(t *testing.T) {
	t.Parallel()
	for _, content := range []string{testOAURL, longURL} {
		for _, width := range []int{280, 430, 1280} {
			data, err := DrawQRSVG(content, width, LevelM)
			if err != nil {
				t.Fatal(err)
			}
			var doc struct {
				XMLName   xml.Name
				Width     string `xml:"width,attr"`
				ViewBox   string `xml:"viewBox,attr"`
				Rendering string `xml:"shape-rendering,attr"`
				Paths     []struct {
					Fill string `xml:"fill,attr"`
					D    string `xml:"d,attr"`
				} `xml:"path"`
			}
			if err := xml.Unmarshal(data, &doc); err != nil {
				t.Fatal(err)
			}
			w := strconv.Itoa(width)
			if doc.XMLName.Local != "svg" || doc.Width != w || doc.Rendering != "crispEdges" || len(doc.Paths) != 2 {
				t.Fatalf("%dpx: %s", width, data)
			}
			checkInert(t, data)
			span, err := parseViewBox(doc.ViewBox)
			if err != nil {
				t.Fatalf("viewBox %q: %v", doc.ViewBox, err)
			}
			if got := scan(t, rasterize(t, doc.Paths[1].D, span, 4)); got != content {
				t.Errorf("%dpx svg scans as %q", width, got)
			}
		}
	}
}

// checkInert fails unless the svg holds only svg and path elements with
// drawing attributes: no script, no foreignObject, no event handler, no
// reference to anything outside.
func checkInert(t *testing.T, data []byte) {
	t.Helper()
	attrs := map[string]bool{"xmlns": true, "width": true, "height": true, "viewBox": true, "shape-rendering": true, "fill": true, "d": true}
	dec := xml.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := dec.Token()
		if err != nil {
			return
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if tok.Name.Local != "svg" && tok.Name.Local != "path" {
				t.Errorf("the svg holds a %s element", tok.Name.Local)
			}
			for _, a := range tok.Attr {
				if !attrs[a.Name.Local] || a.Name.Space != "" || strings.Contains(a.Value, "url(") {
					t.Errorf("the svg holds %s=%q", a.Name.Local, a.Value)
				}
			}
		case xml.ProcInst, xml.Directive:
			t.Errorf("the svg holds %T", tok)
		}
	}
}

// parseViewBox reads the size of a square viewBox, "0 0 n n".
func parseViewBox(viewBox string) (int, error) {
	f := strings.Fields(viewBox)
	if len(f) != 4 || f[0] != "0" || f[1] != "0" || f[2] != f[3] {
		return 0, strconv.ErrSyntax
	}
	return strconv.Atoi(f[2])
}

// rasterize draws a path of M x y h n v1 h -n z runs, span modules
// square, scale pixels a module, as a PNG.
func rasterize(t *testing.T, d string, span, scale int) []byte {
	t.Helper()
	img := image.NewPaletted(image.Rect(0, 0, span*scale, span*scale), codePalette)
	run := regexp.MustCompile(`^M(\d+) (\d+)h(\d+)v1h-(\d+)z`)
	for d != "" {
		m := run.FindStringSubmatch(d)
		if m == nil || m[3] != m[4] {
			t.Fatalf("unexpected path at %.40q", d)
		}
		x, _ := strconv.Atoi(m[1])
		y, _ := strconv.Atoi(m[2])
		n, _ := strconv.Atoi(m[3])
		for py := y * scale; py < (y+1)*scale; py++ {
			for px := x * scale; px < (x+n)*scale; px++ {
				img.Pix[py*img.Stride+px] = 1
			}
		}
		d = d[len(m[0]):]
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestParseLevel(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"L", "M", "Q", "H"} {
		l, err := ParseLevel(s)
		if err != nil || l.String() != s {
			t.Errorf("ParseLevel(%q) = %v, %v", s, l, err)
		}
	}
	if _, err := ParseLevel("m"); err == nil {
		t.Error("level m accepted")
	}
}

func BenchmarkDrawQR(b *testing.B) {
	const url = "https://shop.example.com/q/item/12345"
	for _, c := range []struct {
		name string
		draw func(string, int, Level) ([]byte, error)
	}{{"png", DrawQR}, {"svg", DrawQRSVG}} {
		b.Run(c.name, func(b *testing.B) {
			var size int
			for b.Loop() {
				data, err := c.draw(url, 430, LevelM)
				if err != nil {
					b.Fatal(err)
				}
				size = len(data)
			}
			b.ReportMetric(float64(size), "bytes")
		})
	}
}
