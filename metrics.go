package wxqrcode

import (
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wxqrcode/caddy-wxqrcode/wechat"
)

// metrics are process-wide, like Caddy's own: counters keep counting
// across config reloads, and each new config's registry gets them again.
var metrics = struct {
	requests         *prometheus.CounterVec
	upstreamCalls    *prometheus.CounterVec
	upstreamDuration *prometheus.HistogramVec
	tokenFetches     *prometheus.CounterVec
	codesGenerated   *prometheus.CounterVec
	numUsed          *prometheus.GaugeVec
}{
	requests: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "wxqrcode", Name: "requests_total",
		Help: "Requests handled, by outcome (memory_hit, storage_hit, rendered, miss, rejected, error) and status.",
	}, []string{"outcome", "status"}),
	upstreamCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "wxqrcode", Name: "upstream_calls_total",
		Help: "Calls to WeChat's code APIs, by api and errcode (0 for success, or timeout, network, http_<status>, bad_reply, too_large).",
	}, []string{"api", "errcode"}),
	upstreamDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "wxqrcode", Name: "upstream_duration_seconds",
		Help:    "Time of one call to WeChat's code APIs, by api.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
	}, []string{"api"}),
	tokenFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "wxqrcode", Name: "token_fetches_total",
		Help: "Requests for access tokens, by endpoint (stable, classic, url: the central token server) and errcode.",
	}, []string{"endpoint", "errcode"}),
	codesGenerated: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "wxqrcode", Name: "codes_generated_total",
		Help: "Codes WeChat generated for this process, by api.",
	}, []string{"api"}),
	numUsed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "caddy", Subsystem: "wxqrcode", Name: "num_used",
		Help: "The last Num-Used header WeChat sent: codes used of the app's lifetime budget of 100,000.",
	}, []string{"appid"}),
}

// registerMetrics adds the collectors to a config's registry; a second
// handler in the same config finds them there already.
func registerMetrics(reg *prometheus.Registry) error {
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{metrics.requests, metrics.upstreamCalls, metrics.upstreamDuration,
		metrics.tokenFetches, metrics.codesGenerated, metrics.numUsed} {
		var are prometheus.AlreadyRegisteredError
		if err := reg.Register(c); err != nil && !errors.As(err, &are) {
			return err
		}
	}
	return nil
}

// metricsObserver feeds the WeChat client's exchanges to the metrics.
type metricsObserver struct{}

var opLabels = map[string]string{
	wechat.OpQRCode:      apiQRCode,
	wechat.OpWxaCode:     apiWxaCode,
	wechat.OpUnlimited:   apiUnlimited,
	wechat.OpOACode:      "oa", // one endpoint makes both kinds of official-account code
	wechat.OpURLLink:     apiURLLink,
	wechat.OpScheme:      apiScheme,
	wechat.OpShortLink:   apiShortLink,
	wechat.OpStableToken: tokenStable,
	wechat.OpToken:       tokenClassic,
	// A central token server's fetches count as token fetches too.
	wechat.OpCentralToken: tokenURL,
}

func (metricsObserver) Exchange(op, outcome string, d time.Duration) {
	if outcome == "ok" {
		outcome = "0"
	}
	label := opLabels[op]
	if op == wechat.OpStableToken || op == wechat.OpToken || op == wechat.OpCentralToken {
		metrics.tokenFetches.WithLabelValues(label, outcome).Inc()
		return
	}
	metrics.upstreamCalls.WithLabelValues(label, outcome).Inc()
	metrics.upstreamDuration.WithLabelValues(label).Observe(d.Seconds())
}

// requestCounters keeps the counter of each outcome and status, so that a
// hit looks up no labels.
var requestCounters sync.Map // requestLabels -> prometheus.Counter

type requestLabels struct {
	outcome string
	status  int
}

func countRequest(outcome string, status int) {
	key := requestLabels{outcome, status}
	c, ok := requestCounters.Load(key)
	if !ok {
		c, _ = requestCounters.LoadOrStore(key, metrics.requests.WithLabelValues(outcome, strconv.Itoa(status)))
	}
	c.(prometheus.Counter).Inc()
}

// Interface guards
var _ wechat.Observer = metricsObserver{}
