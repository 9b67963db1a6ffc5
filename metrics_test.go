package wxqrcode_test

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

// scrape reads the caddy_wxqrcode_ samples from /metrics.
func scrape(t *testing.T, s *site) (map[string]float64, string) {
	t.Helper()
	resp, body := s.get("/metrics")
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	samples := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "caddy_wxqrcode_") {
			continue
		}
		name, value, _ := strings.Cut(line, " ")
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("bad sample %q", line)
		}
		samples[name] = v
	}
	return samples, string(body)
}

func TestMetrics(t *testing.T) {
	fake := newFake(t)
	s := startSite(t, fake, "", `metrics /metrics
	`+qrBlock(fake, "allow *\ncap 100000")+
		wxBlock(fake, "/cold", "allow *\ncap 100000\nmemory_cache off")+
		wxBlock(fake, "/wxa", "api wxacode\nallow *\ncap 100000"))
	before, _ := scrape(t, s)

	s.get("/qr?path=m1") // miss
	s.get("/qr?path=m1") // memory hit
	waitCached(t, s.dir, 1)
	s.get("/qr?path=m1&width=600")    // rendered from the master in memory
	s.get("/cold?path=m1&width=1280") // storage hit: same code, no memory cache, the master's width
	s.get("/qr?path=")                // rejected locally
	s.get("/wxa?path=m2")             // miss with Num-Used
	fake.Inject(wechattest.PathQRCode, wechattest.Fault{ErrCode: 45009}, 1)
	s.get("/qr?path=m3") // WeChat refuses
	fake.Inject(wechattest.PathQRCode, wechattest.Fault{Reset: true}, 3)
	s.get("/qr?path=m4") // network error

	after, text := scrape(t, s)
	want := map[string]float64{
		`caddy_wxqrcode_requests_total{outcome="miss",status="200"}`:          2,
		`caddy_wxqrcode_requests_total{outcome="memory_hit",status="200"}`:    1,
		`caddy_wxqrcode_requests_total{outcome="storage_hit",status="200"}`:   1,
		`caddy_wxqrcode_requests_total{outcome="rendered",status="200"}`:      1,
		`caddy_wxqrcode_requests_total{outcome="rejected",status="400"}`:      1,
		`caddy_wxqrcode_requests_total{outcome="rejected",status="429"}`:      1,
		`caddy_wxqrcode_requests_total{outcome="error",status="502"}`:         1,
		`caddy_wxqrcode_upstream_calls_total{api="qrcode",errcode="0"}`:       1,
		`caddy_wxqrcode_upstream_calls_total{api="wxacode",errcode="0"}`:      1,
		`caddy_wxqrcode_upstream_calls_total{api="qrcode",errcode="45009"}`:   1,
		`caddy_wxqrcode_upstream_calls_total{api="qrcode",errcode="network"}`: 3, // retried twice
		`caddy_wxqrcode_upstream_duration_seconds_count{api="qrcode"}`:        5,
		`caddy_wxqrcode_token_fetches_total{endpoint="stable",errcode="0"}`:   1,
		`caddy_wxqrcode_codes_generated_total{api="qrcode"}`:                  1,
		`caddy_wxqrcode_codes_generated_total{api="wxacode"}`:                 1,
	}
	for name, delta := range want {
		if got := after[name] - before[name]; got != delta {
			t.Errorf("%s rose by %v, want %v", name, got, delta)
		}
	}
	if got := after[`caddy_wxqrcode_num_used{appid="`+testAppID+`"}`]; got != float64(fake.Generated()) {
		t.Errorf("num_used %v, want %d", got, fake.Generated())
	}
	for _, secret := range append(fake.Tokens(), testSecret) {
		if strings.Contains(text, secret) {
			t.Error("a secret or token is in the metrics")
		}
	}
}
