package imaging

import (
	"encoding/binary"
	"image"
	"math"
)

// Weights are fixed point, in units of 1/one. With weights summing to
// exactly one along each axis, a flat area keeps its exact value, and a
// sum of 8-bit values weighted along both axes, at most 255·one², fits
// in 32 bits.
const (
	shift = 12
	one   = 1 << shift
)

// filter is the area average along one axis: destination pixel i is the
// sum of source pixels start[i] to start[i]+taps-1, weighted by
// w[i*taps:(i+1)*taps], each the share of the destination pixel that
// the source pixel covers (zero for those it does not).
type filter struct {
	taps  int
	start []int
	w     []uint32
}

// newFilter maps m source pixels onto n destination pixels. Measured in
// 1/n of a source pixel, source pixel j spans [j·n, (j+1)·n) and
// destination pixel i spans [i·m, (i+1)·m), so the overlaps are exact
// integers that sum to m for every destination pixel.
func newFilter(m, n int) filter {
	taps := min((m+n-1)/n+1, m)
	f := filter{taps: taps, start: make([]int, n), w: make([]uint32, n*taps)}
	for i := range n {
		lo, hi := i*m, (i+1)*m
		start := min(lo/n, m-taps)
		f.start[i] = start
		ws := f.w[i*taps : (i+1)*taps]
		var sum uint32
		big := 0
		for t := range ws {
			j := start + t
			overlap := min(hi, (j+1)*n) - max(lo, j*n)
			if overlap <= 0 {
				continue
			}
			ws[t] = uint32((overlap*one + m/2) / m)
			sum += ws[t]
			if ws[t] > ws[big] {
				big = t
			}
		}
		ws[big] += one - sum // rounding, so that the shares sum to one
	}
	return f
}

// resizePlane area-averages the sw×sh plane src, rows sstride apart, into
// the dw×dh plane dst: one pass down the source rows into a row of sums,
// one across it.
func resizePlane(dst []byte, dw, dh, dstride int, src []byte, sw, sh, sstride int) {
	fx, fy := newFilter(sw, dw), newFilter(sh, dh)
	col := make([]uint32, sw)
	rows := make([][]byte, 0, fy.taps)
	ws := make([]uint32, 0, fy.taps)
	for y := 0; y < dh; y++ {
		rows, ws = rows[:0], ws[:0]
		for t, w := range fy.w[y*fy.taps : (y+1)*fy.taps] {
			if w != 0 {
				j := (fy.start[y] + t) * sstride
				rows, ws = append(rows, src[j:j+sw]), append(ws, w)
			}
		}
		sumRows(col, rows, ws)
		out := dst[y*dstride:]
		out = out[:dw]
		n := fx.taps
		if n == 3 {
			// Every width from half the source up: spelt out, twice
			// as fast as the loop below.
			for x := range out {
				k := fx.start[x]
				c := col[k : k+3 : k+3]
				w := fx.w[3*x : 3*x+3 : 3*x+3]
				out[x] = uint8((one*one/2 + w[0]*c[0] + w[1]*c[1] + w[2]*c[2]) >> (2 * shift))
			}
			continue
		}
		for x := range out {
			k := fx.start[x]
			c := col[k : k+n]
			ws := fx.w[x*n : x*n+n]
			ws = ws[:len(c)]
			s := uint32(one * one / 2)
			for t, w := range ws {
				s += w * c[t]
			}
			out[x] = uint8(s >> (2 * shift))
		}
	}
}

// sumRows sets col to the sum of rows weighted by ws, two rows a pass.
func sumRows(col []uint32, rows [][]byte, ws []uint32) {
	if len(rows) == 1 {
		w, r := ws[0], rows[0][:len(col)]
		for x, v := range r {
			col[x] = w * uint32(v)
		}
		return
	}
	w0, w1 := ws[0], ws[1]
	r0, r1 := rows[0][:len(col)], rows[1][:len(col)]
	for x := range col {
		col[x] = w0*uint32(r0[x]) + w1*uint32(r1[x])
	}
	for i := 2; i < len(rows); i += 2 {
		if i+1 == len(rows) {
			w, r := ws[i], rows[i][:len(col)]
			for x, v := range r {
				col[x] += w * uint32(v)
			}
			return
		}
		w0, w1 := ws[i], ws[i+1]
		r0, r1 := rows[i][:len(col)], rows[i+1][:len(col)]
		for x := range col {
			col[x] += w0*uint32(r0[x]) + w1*uint32(r1[x])
		}
	}
}

// resizeRGBA area-averages the sw×sh 8-bit RGBA pixels src, rows sstride
// apart, straight or premultiplied, into dst. It sums premultiplied
// colour, so transparent pixels lend no colour, and works out the straight
// colour from the sums, which keep the precision of faint edges.
//
// Two channels share each 64-bit sum, red and blue, green and alpha, in
// 32-bit halves: a sum weighted down and across is at most 255·one², so
// neither half overflows into the other, and one multiply serves both.
func resizeRGBA(dst *image.NRGBA, src []byte, sw, sh, sstride int, premultiplied bool) {
	dw, dh := dst.Rect.Dx(), dst.Rect.Dy()
	fx, fy := newFilter(sw, dw), newFilter(sh, dh)
	col := make([]uint64, 2*sw)
	for y := 0; y < dh; y++ {
		clear(col)
		for t, w := range fy.w[y*fy.taps : (y+1)*fy.taps] {
			if w != 0 {
				j := (fy.start[y] + t) * sstride
				addRow(col, src[j:j+4*sw], uint64(w), premultiplied)
			}
		}
		out := dst.Pix[y*dst.Stride:]
		out = out[:4*dw]
		n := fx.taps
		for x := range dw {
			k := 2 * fx.start[x]
			c := col[k : k+2*n]
			ws := fx.w[x*n : x*n+n]
			var ga uint64
			for t, w := range ws {
				ga += uint64(w) * c[2*t+1]
			}
			a := uint32(ga >> 32)
			alpha := (a + one*one/2) >> (2 * shift)
			if alpha == 0 {
				continue // NewNRGBA left it transparent
			}
			var rb uint64
			for t, w := range ws {
				rb += uint64(w) * c[2*t]
			}
			r, g, b := uint32(rb), uint32(ga), uint32(rb>>32)
			p := out[4*x : 4*x+4 : 4*x+4]
			p[3] = uint8(alpha)
			if a == 255*one*one {
				p[0] = uint8((r + one*one/2) >> (2 * shift))
				p[1] = uint8((g + one*one/2) >> (2 * shift))
				p[2] = uint8((b + one*one/2) >> (2 * shift))
				continue
			}
			// Partly transparent: unpremultiply.
			f := 255 / float64(a)
			p[0] = uint8(math.Min(float64(r)*f+0.5, 255))
			p[1] = uint8(math.Min(float64(g)*f+0.5, 255))
			p[2] = uint8(math.Min(float64(b)*f+0.5, 255))
		}
	}
}

// addRow adds w times the row of pixels to col, red and blue, then green
// and alpha, premultiplying straight colour by its alpha.
func addRow(col []uint64, row []byte, w uint64, premultiplied bool) {
	col = col[:len(row)/2]
	for x := 0; x+3 < len(row); x += 4 {
		p := binary.LittleEndian.Uint32(row[x : x+4 : x+4])
		a := p >> 24
		if a == 0 {
			continue
		}
		if a != 255 && !premultiplied {
			p = premultiply(p, a)
		}
		c := col[x/2 : x/2+2 : x/2+2]
		c[0] += w * (uint64(p&0xff) | uint64(p&0xff0000)<<16)
		c[1] += w * (uint64(p>>8&0xff) | uint64(a)<<32)
	}
}

// premultiply scales the colour of the little-endian NRGBA pixel p by its
// alpha a.
func premultiply(p, a uint32) uint32 {
	r := (p&0xff*a + 127) / 255
	g := (p>>8&0xff*a + 127) / 255
	b := (p>>16&0xff*a + 127) / 255
	return r | g<<8 | b<<16 | a<<24
}
