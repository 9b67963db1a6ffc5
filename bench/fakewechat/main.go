// Command fakewechat runs the in-repo fake of the WeChat API on 127.0.0.1
// for the benchmark script: it prints the base URL, then serves until it
// is interrupted.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

func main() {
	appID := flag.String("appid", "wxbe4c400000000000", "the app's appid")
	secret := flag.String("secret", "", "the app's secret (required)")
	delay := flag.Duration("delay", 0, "how long every code API call takes")
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
	fmt.Println(fake.URL)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	<-stop
	fmt.Fprintf(os.Stderr, "fakewechat: %d code calls, %d token calls\n", fake.CodeCalls(), fake.TokenCalls())
}
