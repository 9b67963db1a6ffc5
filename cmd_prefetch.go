package wxqrcode

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	"golang.org/x/term"
)

func prefetchCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "prefetch --url <route URL> [--param path] [--query k=v&...] [--concurrency 4] [--file <list>] [signing flags]",
		Short: "Fills the cache with the codes of a list",
		Long: `
Reads a list of values, one a line (from --file, or standard input), and
asks the wxqrcode route at --url for the code of each. A value goes where
--url has {} (a path segment or a query value, escaped to fit), or else in
the query parameter --param (path by default; use --param scene for an
unlimited route that reads {query.scene}), beside the fixed parameters of
--query. Repeated values are asked once. The codes go through the route like
any request, so the route's checks, allow globs and caps apply, and the
cache fills as it would for visitors. Each URL asks for the master's width,
1280, unless --url or --query gives a width: the cache gets the masters,
from which every width is drawn.

For routes with sign_key, each URL is signed as caddy wxqrcode sign signs
it, in batches:
  --address <admin address>, or --config <file> [--adapter <name>],
  and --name <handler>:
      by the running Caddy, for the handler named --name or else the one
      whose route's matchers match each URL;
  --appid <appid> [--api <api>] [--key-env <var>]:
      here, for a route with the default templates, with the key in the
      environment variable --key-env names (default WXQRCODE_SIGN_KEY).
Without these flags the URLs go unsigned. A URL that cannot be signed fails
with the errcode the route would answer, or as no_handler when no wxqrcode
handler serves it.

A value holding "/" cannot fill a path segment ({} before any "?"): the
route would see two segments. It fails as slash_in_path.

A window cap (429) is waited out when its Retry-After is at most
--max-wait; a spent budget (403 990421) ends the run. At the end a summary
counts the codes fetched, those already cached, and failures by errcode.
The exit status is 1 when a code failed or the budget ran out.

Examples:

  caddy wxqrcode prefetch --url https://shop.example.com/qr --file paths.txt
  caddy wxqrcode prefetch --url 'https://posters.example.com/poster/{}.png' \
      --address localhost:2019 --file scenes.txt
`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var p prefetcher
			flags := cmd.Flags()
			p.route, _ = flags.GetString("url")
			p.param, _ = flags.GetString("param")
			if strings.Contains(p.route, slot) {
				if err := refuseFlags(cmd, "--url has "+slot+" for the value", "param"); err != nil {
					return err
				}
			}
			p.query, _ = flags.GetString("query")
			p.concurrency, _ = flags.GetInt("concurrency")
			p.maxWait, _ = flags.GetDuration("max-wait")
			var err error
			if p.signer, err = signerFromFlags(cmd, false); err != nil {
				return err
			}
			in := io.Reader(os.Stdin)
			if file, _ := flags.GetString("file"); file != "" {
				f, err := os.Open(file)
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			return p.run(cmd.Context(), in, cmd.OutOrStdout(), os.Stderr)
		},
	}
	flags := c.Flags()
	flags.String("url", "", "the URL of the wxqrcode route (required); {} in it takes each value")
	flags.String("param", "path", "the query parameter each line fills")
	flags.String("query", "", "fixed query parameters for every code, as k=v&k=v")
	flags.Int("concurrency", 4, "requests at once")
	flags.Duration("max-wait", time.Minute, "the longest Retry-After of a cap to wait out")
	flags.String("file", "", "the list, one value a line (default: standard input)")
	addAdminFlags(c)
	addNameFlag(c)
	addOfflineFlags(c)
	return c
}

// prefetcher asks a route for the code of each line.
type prefetcher struct {
	route, param, query string
	concurrency         int
	maxWait             time.Duration
	// signer signs each URL; nil leaves them unsigned.
	signer *signer
	client *http.Client

	fetched, cached atomic.Int64
	mu              sync.Mutex
	failed          map[string]int // by errcode
	// halt ends the asking: requests under way finish.
	halt     chan struct{}
	haltOnce sync.Once
	spent    atomic.Bool
}

// errBudgetSpent ends a prefetch: no new code can be had.
var errBudgetSpent = errors.New("the route's budget of new codes is spent")

// slot marks where --url takes each value.
const slot = "{}"

// signBatch is how many URLs prefetch has signed in one call.
const signBatch = 500

func (p *prefetcher) run(ctx context.Context, in io.Reader, out, progress io.Writer) error {
	if p.route == "" {
		return fmt.Errorf("--url is required")
	}
	base, err := url.Parse(strings.Replace(p.route, slot, "value", 1))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") {
		return fmt.Errorf("--url must be an http or https URL, not %q", p.route)
	}
	if strings.Count(p.route, slot) > 1 {
		return fmt.Errorf("--url may have %s once", slot)
	}
	fixed, err := url.ParseQuery(p.query)
	if err != nil {
		return fmt.Errorf("--query: %v", err)
	}
	var lines []string
	seen := map[string]bool{}
	repeated := 0
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
		case seen[line]:
			repeated++
		default:
			seen[line] = true
			lines = append(lines, line)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if p.client == nil {
		p.client = &http.Client{Timeout: time.Minute, CheckRedirect: stopAtLink}
	}
	p.failed = map[string]int{}
	p.halt = make(chan struct{})

	start := time.Now()
	bar := newProgressBar(progress, len(lines), p.counts)
	var g errgroup.Group
	g.SetLimit(max(p.concurrency, 1))
	var signErr error
feed:
	for batch := range slices.Chunk(lines, signBatch) {
		var targets []string
		if targets, signErr = p.targets(fixed, batch); signErr != nil {
			break
		}
		for _, target := range targets {
			if p.halted(ctx) {
				break feed
			}
			if target != "" {
				g.Go(func() error {
					if !p.halted(ctx) {
						p.one(ctx, target)
					}
					return nil
				})
			}
		}
	}
	_ = g.Wait() // p.one reports its failures by errcode
	bar.done()
	if signErr != nil {
		return signErr
	}

	done, fetched, cached := p.counts()
	fmt.Fprintf(out, "%s in %s: %d fetched, %d already cached, %d failed",
		count(len(lines), "code"), time.Since(start).Round(time.Millisecond), fetched, cached, done-fetched-cached)
	if left := int64(len(lines)) - done; left > 0 {
		fmt.Fprintf(out, ", %d not asked", left)
	}
	if repeated > 0 {
		fmt.Fprintf(out, " (%s skipped)", count(repeated, "repeated line"))
	}
	fmt.Fprintln(out)
	for _, code := range slices.Sorted(maps.Keys(p.failed)) {
		fmt.Fprintf(out, "  errcode %s: %d\n", code, p.failed[code])
	}
	if p.spent.Load() {
		return errBudgetSpent
	}
	if failed := done - fetched - cached; failed > 0 {
		return fmt.Errorf("%d of %d codes failed", failed, len(lines))
	}
	return nil
}

// halted tells whether no more codes are to be asked for.
func (p *prefetcher) halted(ctx context.Context) bool {
	select {
	case <-p.halt:
		return true
	case <-ctx.Done():
		return true
	default:
		return false
	}
}

// count is n things, in the singular or the plural.
func count(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return strconv.Itoa(n) + " " + thing + "s"
}

func (p *prefetcher) counts() (done, fetched, cached int64) {
	p.mu.Lock()
	failed := 0
	for _, n := range p.failed {
		failed += n
	}
	p.mu.Unlock()
	fetched, cached = p.fetched.Load(), p.cached.Load()
	return fetched + cached + int64(failed), fetched, cached
}

// slotInPath tells whether route takes the value in its path, before any
// query.
func slotInPath(route string) bool {
	i, q := strings.Index(route, slot), strings.IndexByte(route, '?')
	return i >= 0 && (q < 0 || i < q)
}

// target is the URL asking for the code of value.
func (p *prefetcher) target(fixed url.Values, value string) (string, error) {
	raw := p.route
	placed := false
	if i := strings.Index(raw, slot); i >= 0 {
		esc := url.QueryEscape
		if slotInPath(raw) {
			esc = url.PathEscape
		}
		raw, placed = raw[:i]+esc(value)+raw[i+len(slot):], true
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	q := u.Query()
	for k, v := range fixed {
		q[k] = v
	}
	if !placed {
		q.Set(p.param, value)
	}
	// The master's width is served as WeChat drew it: nothing is
	// rendered for a width no visitor may ask for.
	if _, ok := q["width"]; !ok {
		q.Set("width", strconv.Itoa(masterWidth))
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// targets returns the URLs asking for the codes of values, signed when
// p has a signer; a value that cannot be asked for is counted as failed
// and has an empty URL.
func (p *prefetcher) targets(fixed url.Values, values []string) ([]string, error) {
	targets := make([]string, len(values))
	var unsigned []string
	var at []int // where each of unsigned goes in targets
	for i, value := range values {
		if slotInPath(p.route) && strings.Contains(value, "/") {
			p.fail("slash_in_path")
			continue
		}
		target, err := p.target(fixed, value)
		if err != nil {
			p.fail("bad_url")
			continue
		}
		if p.signer == nil {
			targets[i] = target
			continue
		}
		unsigned = append(unsigned, target)
		at = append(at, i)
	}
	if len(unsigned) == 0 {
		return targets, nil
	}
	results, err := p.signer.sign(unsigned)
	if err != nil {
		return nil, err
	}
	for j, res := range results {
		switch {
		case res.ErrCode != 0:
			p.fail(strconv.Itoa(res.ErrCode))
		case res.Error != "":
			p.fail("no_handler")
		default:
			targets[at[j]] = res.URL
		}
	}
	return targets, nil
}

// stopAtLink follows a site's redirects but not a link route's: its
// Location is the link itself, outside the site.
func stopAtLink(req *http.Request, via []*http.Request) error {
	if req.Response != nil && fromModule(req.Response) {
		return http.ErrUseLastResponse
	}
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	return nil
}

// fromModule reports whether the module answered resp.
func fromModule(resp *http.Response) bool {
	return strings.HasPrefix(resp.Header.Get("Cache-Status"), "wxqrcode")
}

// one asks for one code, waiting out a window cap if it is short enough.
func (p *prefetcher) one(ctx context.Context, target string) {
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		if err != nil {
			p.fail("bad_url")
			return
		}
		resp, err := p.client.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				p.fail("network")
			}
			return
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK || (resp.StatusCode == http.StatusFound && fromModule(resp)) {
			if strings.Contains(resp.Header.Get("Cache-Status"), "; hit") {
				p.cached.Add(1)
			} else {
				p.fetched.Add(1)
			}
			return
		}
		code := errcode(body, resp.StatusCode)
		if resp.StatusCode == http.StatusTooManyRequests {
			wait, err := strconv.Atoi(resp.Header.Get("Retry-After"))
			if err == nil && time.Duration(wait)*time.Second <= p.maxWait {
				select {
				case <-time.After(time.Duration(wait) * time.Second):
					continue
				case <-ctx.Done():
					return
				}
			}
		}
		p.fail(code)
		if code == strconv.Itoa(codeBudgetSpent) || code == "45029" {
			p.spent.Store(true)
			p.haltOnce.Do(func() { close(p.halt) })
		}
		return
	}
}

func (p *prefetcher) fail(code string) {
	p.mu.Lock()
	p.failed[code]++
	p.mu.Unlock()
}

// errcode reads the errcode of an error body, or names the status.
func errcode(body []byte, status int) string {
	var e struct {
		ErrCode *int `json:"errcode"`
	}
	if json.Unmarshal(body, &e) == nil && e.ErrCode != nil {
		return strconv.Itoa(*e.ErrCode)
	}
	return "http_" + strconv.Itoa(status)
}

// progressBar redraws one line on a terminal; elsewhere it stays silent.
type progressBar struct {
	w      io.Writer
	total  int
	counts func() (done, fetched, cached int64)
	quit   chan struct{}
	ended  chan struct{}
}

func newProgressBar(w io.Writer, total int, counts func() (int64, int64, int64)) *progressBar {
	b := &progressBar{w: w, total: total, counts: counts, quit: make(chan struct{}), ended: make(chan struct{})}
	if f, ok := w.(*os.File); !ok || !term.IsTerminal(int(f.Fd())) || total == 0 {
		close(b.ended)
		return b
	}
	go func() {
		defer close(b.ended)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			b.draw()
			select {
			case <-tick.C:
			case <-b.quit:
				b.draw()
				fmt.Fprintln(b.w)
				return
			}
		}
	}()
	return b
}

func (b *progressBar) draw() {
	done, fetched, cached := b.counts()
	const width = 30
	filled := int(done * width / int64(b.total))
	fmt.Fprintf(b.w, "\r[%s%s] %d/%d  fetched %d  cached %d  failed %d ",
		strings.Repeat("=", filled), strings.Repeat(" ", width-filled), done, b.total, fetched, cached, done-fetched-cached)
}

func (b *progressBar) done() {
	select {
	case <-b.ended:
	default:
		close(b.quit)
		<-b.ended
	}
}
