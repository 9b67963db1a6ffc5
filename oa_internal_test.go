package wxqrcode

import (
	"crypto/sha256"
	"testing"
	"time"

	"github.com/makiuchi-d/gozxing"

	"github.com/wxqrcode/caddy-wxqrcode/internal/imaging"
)

// ScanOACode decodes a code this module drew, as ScanCode does; where
// gozxing's finder-pattern detector misses it, which it does for about one
// url in ten at every width (and for some codes gozxing encodes itself),
// it reads the image as the pure code it is, which still checks the
// format and the error correction.
func ScanOACode(data []byte) (string, error) {
	if got, err := ScanCode(data); err == nil {
		return got, nil
	}
	return scan(data, map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_PURE_BARCODE: true})
}

const testOAURL = "http://weixin.qq.com/q/02AbCdEfGhIjKlMnOpQrSt"

// The renewal margin is a tenth of the life, at most an hour; an entry is
// stale from then on, and its Expires says so.
func TestRenewMargin(t *testing.T) {
	stored := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		life, margin time.Duration
	}{
		{60 * time.Second, 6 * time.Second},
		{time.Hour, 6 * time.Minute},
		{30 * 24 * time.Hour, time.Hour},
	}
	for _, tt := range tests {
		e := newEntry([]byte("x"), "image/png", sha256.Sum256([]byte("x")), stored)
		e.setExpiry(stored.Add(tt.life))
		if got := stored.Add(tt.life).Sub(e.renewAt); got != tt.margin {
			t.Errorf("life %s: renewed %s early, want %s", tt.life, got, tt.margin)
		}
		if want := e.renewAt.Format("Mon, 02 Jan 2006 15:04:05 GMT"); e.expiresHeader[0] != want {
			t.Errorf("Expires %q, want %q", e.expiresHeader[0], want)
		}
		if e.stale(clockAt(e.renewAt.Add(-time.Nanosecond))) {
			t.Errorf("life %s: stale before its renewal", tt.life)
		}
		if !e.stale(clockAt(e.renewAt)) {
			t.Errorf("life %s: not stale at its renewal", tt.life)
		}
	}
	never := newEntry([]byte("x"), "image/png", sha256.Sum256([]byte("x")), stored)
	never.setExpiry(time.Time{})
	if never.stale(clockAt(stored.Add(100*365*24*time.Hour))) || never.expiresHeader != nil {
		t.Error("a code without expiry is stale or has Expires")
	}
}

// Drawing a width of an official account's code anew against resampling
// its master: go test -run '^$' -bench 'OAWidth' .
func BenchmarkOAWidthRedraw(b *testing.B) {
	master := oaMaster(b)
	for b.Loop() {
		if _, err := redraw(master, 430, defaultStyle); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOAWidthResample(b *testing.B) {
	master := oaMaster(b)
	master.content = "" // as render does for WeChat's images
	for b.Loop() {
		if _, err := render(master, 430, defaultStyle); err != nil {
			b.Fatal(err)
		}
	}
}

func oaMaster(b *testing.B) *entry {
	data, err := imaging.DrawQR(testOAURL, masterWidth, imaging.LevelM)
	if err != nil {
		b.Fatal(err)
	}
	e := newEntry(data, "image/png", sha256.Sum256(data), time.Now())
	e.content = testOAURL
	return e
}

// clockAt is a clock stopped at t.
func clockAt(t time.Time) *handlerClock {
	c := newClock()
	c.set(func() time.Time { return t })
	return c
}
