// Command pace is the well-behaved client of bench/stranger.sh: it asks
// for a list of URLs at a fixed rate, whatever the server's speed (an open
// loop, as visitors arrive), and prints the latency percentiles and the
// answers by status.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"
)

func main() {
	rate := flag.Int("rate", 100, "requests a second")
	duration := flag.Duration("d", 20*time.Second, "how long to ask")
	flag.Parse()
	var urls []string
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		urls = append(urls, sc.Text())
	}
	if len(urls) == 0 || *rate < 1 {
		fmt.Fprintln(os.Stderr, "pace: URLs on stdin, one a line, and -rate of at least 1")
		os.Exit(2)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var (
		mu        sync.Mutex
		latencies []time.Duration
		statuses  = map[int]int{}
		wg        sync.WaitGroup
	)
	tick := time.NewTicker(time.Second / time.Duration(*rate))
	defer tick.Stop()
	end := time.Now().Add(*duration)
	for i := 0; time.Now().Before(end); i++ {
		<-tick.C
		wg.Go(func() {
			start := time.Now()
			status := 0
			resp, err := client.Get(urls[i%len(urls)])
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				status = resp.StatusCode
			}
			took := time.Since(start)
			mu.Lock()
			latencies = append(latencies, took)
			statuses[status]++
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.Sort(latencies)
	pct := func(p float64) time.Duration { return latencies[int(p*float64(len(latencies)-1))] }
	fmt.Printf("requests %d p50 %.2fms p99 %.2fms max %.2fms statuses %v\n", len(latencies),
		ms(pct(0.50)), ms(pct(0.99)), ms(latencies[len(latencies)-1]), statuses)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
