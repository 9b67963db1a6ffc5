package wxqrcode_test

import (
	"bytes"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

// BenchmarkMiss asks a real Caddy for a new code each time: the request
// parsed, admitted, WeChat (the fake, answering at once with a fixed
// 1280-pixel master) called, the image checked, listed and stored.
func BenchmarkMiss(b *testing.B) {
	var master bytes.Buffer
	if err := jpeg.Encode(&master, image.NewGray(image.Rect(0, 0, 1280, 1280)), nil); err != nil {
		b.Fatal(err)
	}
	fake := wechattest.NewServer(testAppID, testSecret)
	defer fake.Close()
	fake.Inject(wechattest.PathUnlimited, wechattest.Fault{Body: master.Bytes(), ContentType: "image/jpeg"}, 0)
	b.Setenv(secretEnv, testSecret)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(fmt.Sprintf(`{
	admin off
	persist_config off
	storage file_system %s
	log {
		output discard
	}
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	wxqrcode /u/* {
		appid %s
		secret {env.%s}
		api_base %s
		api unlimited
		scene {path.1}
		page pages/item/item
		cap 100000000 per 1m
		max_stored 100000000
	}
}`, b.TempDir(), port, testAppID, secretEnv, fake.URL)), nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = caddy.Stop() }()
	client := &http.Client{}
	b.ResetTimer()
	for i := range b.N {
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/u/m%d?width=1280", port, i))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}
