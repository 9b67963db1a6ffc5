// Command fakewechat runs the in-repo fake of the WeChat API on 127.0.0.1
// for the benchmark script: it prints the base URL, then serves until it
// is interrupted.
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

func main() {
	appID := flag.String("appid", "wxbe4c400000000000", "the app's appid")
	secret := flag.String("secret", "", "the app's secret (required)")
	delay := flag.Duration("delay", 0, "how long every code API call takes")
	chaos := flag.Duration("chaos", 0, "if set, inject one random fault into the code APIs this often")
	flag.Parse()
	if *secret == "" {
		fmt.Fprintln(os.Stderr, "fakewechat: -secret is required")
		os.Exit(2)
	}
	fake := wechattest.NewServer(*appID, *secret)
	defer fake.Close()
	if *delay > 0 {
		for _, p := range []string{wechattest.PathQRCode, wechattest.PathWxaCode, wechattest.PathUnlimited} {
			fake.Inject(p, wechattest.Fault{Delay: *delay}, 0)
		}
	}
	if *chaos > 0 {
		go injectChaos(fake, *chaos)
	}
	fmt.Println(fake.URL)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	<-stop
	fmt.Fprintf(os.Stderr, "fakewechat: %d code calls, %d token calls\n", fake.CodeCalls(), fake.TokenCalls())
}

// faults are what chaos draws from: WeChat busy or rate-limited, broken
// connections, bad bodies, a proxy's 502, a slow answer.
var faults = []wechattest.Fault{
	{ErrCode: -1},
	{ErrCode: 45011},
	{Reset: true},
	{Garbage: true},
	{Truncate: true},
	{Status: 502, Body: []byte("<html>502 Bad Gateway</html>"), ContentType: "text/html"},
	{Delay: 300 * time.Millisecond},
}

func injectChaos(fake *wechattest.Server, every time.Duration) {
	paths := []string{wechattest.PathQRCode, wechattest.PathWxaCode, wechattest.PathUnlimited}
	for range time.Tick(every) {
		fake.Inject(paths[rand.IntN(len(paths))], faults[rand.IntN(len(faults))], 1)
	}
}
