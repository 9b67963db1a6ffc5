package wxqrcode

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
)

func prefetchCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "prefetch --url <route URL> [--param path] [--query k=v&...] [--concurrency 4] [--file <list>]",
		Short: "Fills the cache with the codes of a list",
		Long: `
Reads a list of values, one a line (from --file, or standard input), and
asks the wxqrcode route at --url for the code of each. A value goes where
--url has {} (a path segment or a query value, escaped to fit), or else in
the query parameter --param (path by default; use --param scene for an
unlimited route that reads {query.scene}), beside the fixed parameters of
--query. Repeated values are asked once. The codes go through the route like
any request, so the route's checks, allow globs and caps apply, and the
cache fills as it would for visitors.

For routes with sign_key, each URL is signed: with --config, for the route
of that Caddy config that serves it (as caddy wxqrcode sign --config does),
or with --key-env naming a variable that holds the key, and --appid and
--api as in a route with the default templates.

A value holding "/" cannot fill a path segment ({} before any "?"): the
route would see two segments. It fails as slash_in_path.

A window cap (429) is waited out when its Retry-After is at most
--max-wait; a spent budget (403 990421) ends the run. At the end a summary
counts the codes fetched, those already cached, and failures by errcode.
The exit status is 1 when a code failed or the budget ran out.

Examples:

  caddy wxqrcode prefetch --url https://shop.example.com/qr --file paths.txt
  caddy wxqrcode prefetch --url 'https://shop.example.com/poster/{}' --file scenes.txt
`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var p prefetcher
			flags := cmd.Flags()
			p.route, _ = flags.GetString("url")
			p.param, _ = flags.GetString("param")
			if strings.Contains(p.route, slot) && flags.Changed("param") {
				return fmt.Errorf("--url has %s for the value: --param does not apply", slot)
			}
			p.query, _ = flags.GetString("query")
			p.concurrency, _ = flags.GetInt("concurrency")
			p.maxWait, _ = flags.GetDuration("max-wait")
			p.appID, _ = flags.GetString("appid")
			p.api, _ = flags.GetString("api")
			var err error
			if p.finder, err = finderFromFlags(cmd); err != nil {
				return err
			}
			if p.finder != nil {
				defer p.finder.Close()
			}
			if env, _ := flags.GetString("key-env"); env != "" {
				p.key = os.Getenv(env)
				if p.key == "" {
					return fmt.Errorf("%s is empty", env)
				}
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
	flags.String("config", "", "the Caddy config holding the route, to sign each URL for it")
	flags.String("adapter", "", "the config's adapter (default: caddyfile for files named Caddyfile*)")
	flags.String("key-env", "", "the environment variable holding the route's sign_key, to sign each URL")
	flags.String("appid", "", "the route's appid, for signing")
	flags.String("api", apiQRCode, "the route's api, for signing")
	return c
}

// prefetcher asks a route for the code of each line.
type prefetcher struct {
	route, param, query string
	concurrency         int
	maxWait             time.Duration
	key, appID, api     string
	signer              *Handler     // signs each URL when key is set
	finder              *routeFinder // finds the route that signs each URL
	client              *http.Client

	fetched, cached atomic.Int64
	mu              sync.Mutex
	failed          map[string]int // by errcode
	// halt ends the feeding of lines; requests under way finish.
	halt     chan struct{}
	haltOnce sync.Once
	spent    atomic.Bool
}

// errBudgetSpent ends a prefetch: no new code can be had.
var errBudgetSpent = errors.New("the route's budget of new codes is spent")

// slot marks where --url takes each value.
const slot = "{}"

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
	if p.key != "" {
		if p.signer, err = defaultHandler(p.appID, p.api, p.key); err != nil {
			return err
		}
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
		p.client = &http.Client{Timeout: time.Minute}
	}
	p.failed = map[string]int{}
	p.halt = make(chan struct{})

	start := time.Now()
	work := make(chan string)
	var wg sync.WaitGroup
	for range max(p.concurrency, 1) {
		wg.Go(func() {
			for line := range work {
				select {
				case <-p.halt:
					continue // not asked
				default:
				}
				p.one(ctx, fixed, line)
			}
		})
	}
	bar := newProgressBar(progress, len(lines), p.counts)
feed:
	for _, line := range lines {
		select {
		case work <- line:
		case <-p.halt:
			break feed
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	bar.done()

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
	codes := make([]string, 0, len(p.failed))
	for code := range p.failed {
		codes = append(codes, code)
	}
	sort.Strings(codes)
	for _, code := range codes {
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

// sign returns target signed for its route, or as it is for a route
// without sign_key.
func (p *prefetcher) sign(target string) (string, error) {
	if p.signer == nil && p.finder == nil {
		return target, nil
	}
	r, err := preparedRequest(target)
	if err != nil {
		return "", err
	}
	u := *r.URL // a rewrite on the way to the handler changes r
	h := p.signer
	if h == nil {
		if h, err = p.finder.find(r); err != nil {
			return "", err
		}
		if len(h.SignKey) == 0 {
			return target, nil
		}
	}
	return h.signedURL(r, &u)
}

// one asks for one code, waiting out a window cap if it is short enough.
func (p *prefetcher) one(ctx context.Context, fixed url.Values, line string) {
	if slotInPath(p.route) && strings.Contains(line, "/") {
		p.fail("slash_in_path")
		return
	}
	target, err := p.target(fixed, line)
	if err != nil {
		p.fail("bad_url")
		return
	}
	if target, err = p.sign(target); err != nil {
		p.fail("unsigned")
		return
	}
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
		if resp.StatusCode == http.StatusOK {
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
	if f, ok := w.(*os.File); !ok || !isTerminal(f) || total == 0 {
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

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
