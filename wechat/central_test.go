package wechat_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxqrcode/caddy-wxqrcode/wechat"
	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

// recorder is an Observer that keeps the operations it is told of.
type recorder struct {
	mu  sync.Mutex
	ops []string
}

func (r *recorder) Exchange(op, outcome string, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, op+" "+outcome)
}

func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ops...)
}

// newCentralClient starts a fake and a client whose tokens come from the
// fake's central token server.
func newCentralClient(t *testing.T) (*wechattest.Server, *wechat.URLTokenSource, *wechat.Client) {
	t.Helper()
	fake := wechattest.NewServer(testAppID, testSecret)
	t.Cleanup(fake.Close)
	src := &wechat.URLTokenSource{URL: fake.CentralTokenURL(), Backoff: time.Millisecond}
	return fake, src, &wechat.Client{BaseURL: fake.URL, Tokens: wechat.NewReuseTokenSource(src), Backoff: time.Millisecond}
}

func centralCalls(fake *wechattest.Server) int { return fake.Calls(wechattest.PathCentralToken) }

func TestURLTokenReusedUntilExpiry(t *testing.T) {
	t.Parallel()
	fake, src, c := newCentralClient(t)
	obs := &recorder{}
	src.Observer = obs
	fake.SetTokenTTL(time.Second)
	ctx := context.Background()
	for range 5 {
		if _, err := c.CreateQRCode(ctx, qr("a")); err != nil {
			t.Fatal(err)
		}
	}
	if n := centralCalls(fake); n != 1 {
		t.Fatalf("%d central calls for 5 code calls, want 1", n)
	}
	time.Sleep(1100 * time.Millisecond)
	if _, err := c.CreateQRCode(ctx, qr("a")); err != nil {
		t.Fatal(err)
	}
	if n := centralCalls(fake); n != 2 {
		t.Fatalf("%d central calls after expiry, want 2", n)
	}
	if n := fake.TokenCalls(); n != 0 {
		t.Errorf("%d calls to WeChat's token endpoints, want none", n)
	}
	if got := strings.Join(obs.list(), ","); got != "central_token ok,central_token ok" {
		t.Errorf("observed %q", got)
	}
}

func TestURLTokenRefetchedAfterRefusal(t *testing.T) {
	t.Parallel()
	for _, code := range []int{wechat.CodeInvalidCredential, wechat.CodeTokenExpired} {
		fake, _, c := newCentralClient(t)
		ctx := context.Background()
		if _, err := c.CreateQRCode(ctx, qr("a")); err != nil {
			t.Fatal(err)
		}
		if code == wechat.CodeTokenExpired {
			fake.ExpireTokens()
		} else {
			fake.InvalidateTokens()
		}
		if _, err := c.CreateQRCode(ctx, qr("a")); err != nil {
			t.Fatalf("%d: want success with the central server's next token, got %v", code, err)
		}
		if centralCalls(fake) != 2 || fake.CodeCalls() != 3 || fake.TokenCalls() != 0 {
			t.Errorf("%d: central %d, code %d, WeChat token %d calls; want 2, 3, 0",
				code, centralCalls(fake), fake.CodeCalls(), fake.TokenCalls())
		}
	}
}

// A central server that hands back the token WeChat just refused gets an
// error, not a loop of refusals, and is asked again once backed off.
func TestURLTokenRefusedHandedBack(t *testing.T) {
	t.Parallel()
	fake, _, c := newCentralClient(t)
	ctx := context.Background()
	if _, err := c.CreateQRCode(ctx, qr("a")); err != nil {
		t.Fatal(err)
	}
	stale := fake.Tokens()[0]
	fake.InvalidateTokens()
	fake.Inject(wechattest.PathCentralToken, wechattest.Fault{
		Body: []byte(`{"access_token":"` + stale + `","expires_in":7000}`), ContentType: "application/json",
	}, 0)
	_, err := c.CreateQRCode(ctx, qr("a"))
	if !errors.Is(err, wechat.ErrRefusedTokenAgain) {
		t.Fatalf("want ErrRefusedTokenAgain, got %v", err)
	}
	assertNoSecret(t, fake, err.Error())
	for range 5 {
		if _, err := c.CreateQRCode(ctx, qr("a")); !errors.Is(err, wechat.ErrRefusedTokenAgain) {
			t.Fatalf("want the refusal to stand, got %v", err)
		}
	}
	if centralCalls(fake) != 2 || fake.CodeCalls() != 2 {
		t.Errorf("central %d, code %d calls; want 2 and 2: the stale token is never sent again and the server is backed off",
			centralCalls(fake), fake.CodeCalls())
	}
	fake.ClearFaults()
	var last error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, last = c.CreateQRCode(ctx, qr("a")); last == nil {
			break
		}
	}
	if last != nil {
		t.Fatalf("want success once the server has a new token, got %v", last)
	}
	if n := centralCalls(fake); n > 5 {
		t.Errorf("%d central calls, want a handful", n)
	}
}

// A central server that is down or answers garbage is asked a handful of
// times by a stream of callers, and again once its backoff has passed.
func TestURLTokenFailuresBackedOff(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		fault wechattest.Fault
		check func(error) bool
		tries int // requests per refresh
	}{
		{"down", wechattest.Fault{Status: 503, Body: []byte("<html>down</html>")},
			func(err error) bool {
				var serr *wechat.StatusError
				return errors.As(err, &serr) && serr.StatusCode == 503
			},
			1 + wechat.DefaultRetries},
		{"reset", wechattest.Fault{Reset: true},
			func(err error) bool { return err != nil && strings.Contains(err.Error(), wechattest.PathCentralToken) },
			1 + wechat.DefaultRetries},
		{"garbage", wechattest.Fault{Body: []byte("<html>login</html>"), ContentType: "text/html"},
			func(err error) bool { return errors.Is(err, wechat.ErrBadReply) }, 1},
		{"errcode", wechattest.Fault{ErrCode: wechat.CodeIPNotAllowed},
			func(err error) bool { var werr *wechat.Error; return errors.As(err, &werr) && werr.Code == 40164 }, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake, src, c := newCentralClient(t)
			fake.Inject(wechattest.PathCentralToken, tc.fault, 0)
			_, err := src.Token(context.Background())
			if !tc.check(err) {
				t.Fatalf("unexpected error %v", err)
			}
			var terr *wechat.TokenError
			if !errors.As(err, &terr) {
				t.Errorf("%v is not a *TokenError, so the handler would pass its detail to visitors", err)
			}
			if n := centralCalls(fake); n != tc.tries {
				t.Errorf("%d requests for one Token call, want %d", n, tc.tries)
			}
			fake.ResetCounters()
			ctx := context.Background()
			calls := 0
			for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
				if _, err := c.CreateQRCode(ctx, qr("a")); !tc.check(err) {
					t.Fatalf("unexpected error %v", err)
				}
				calls++
			}
			if n := centralCalls(fake); n > 4*tc.tries {
				t.Errorf("%d central calls for %d callers in a second, want at most %d", n, calls, 4*tc.tries)
			}
			if fake.CodeCalls() != 0 || fake.TokenCalls() != 0 {
				t.Errorf("%d code and %d WeChat token calls, want none", fake.CodeCalls(), fake.TokenCalls())
			}
			fake.ClearFaults()
			time.Sleep(2 * time.Second) // past the longest wait so far
			if _, err := c.CreateQRCode(ctx, qr("a")); err != nil {
				t.Fatalf("want success once the server recovers, got %v", err)
			}
		})
	}
}

func TestURLTokenPassingFailuresRetried(t *testing.T) {
	t.Parallel()
	fake, src, _ := newCentralClient(t)
	fake.Inject(wechattest.PathCentralToken, wechattest.Fault{Status: 502}, 2)
	if _, err := src.Token(context.Background()); err != nil {
		t.Fatalf("want a token on the third try, got %v", err)
	}
	if n := centralCalls(fake); n != 3 {
		t.Errorf("%d central calls, want 3", n)
	}
}

// A hanging server is given up on at the refresh's deadline.
func TestURLTokenSlowServer(t *testing.T) {
	t.Parallel()
	fake, src, _ := newCentralClient(t)
	fake.Inject(wechattest.PathCentralToken, wechattest.Fault{Hang: true}, 0)
	reuse := wechat.NewReuseTokenSource(src)
	reuse.FetchTimeout = 100 * time.Millisecond
	_, err := reuse.Token(context.Background())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want a deadline error, got %v", err)
	}
	if n := centralCalls(fake); n != 1 {
		t.Errorf("%d central calls, want 1: a timeout is not retried", n)
	}
}

func TestURLTokenHeader(t *testing.T) {
	t.Parallel()
	fake, src, c := newCentralClient(t)
	fake.SetCentralAuth("Authorization", "Bearer central-key")
	_, err := c.CreateQRCode(context.Background(), qr("a"))
	var serr *wechat.StatusError
	if !errors.As(err, &serr) || serr.StatusCode != http.StatusUnauthorized {
		t.Fatalf("want a 401 without the header, got %v", err)
	}
	src.Header = http.Header{"Authorization": {"Bearer central-key"}}
	if _, err := src.Token(context.Background()); err != nil {
		t.Fatalf("want a token with the header, got %v", err)
	}
}

// The URL's query and user info may hold credentials: no error shows them.
func TestURLTokenRedacted(t *testing.T) {
	t.Parallel()
	fake := wechattest.NewServer(testAppID, testSecret)
	u, _ := url.Parse(fake.CentralTokenURL())
	u.User = url.UserPassword("svc", "USERINFO-SECRET")
	u.RawQuery = "key=QUERY-SECRET"
	src := &wechat.URLTokenSource{URL: u.String(), Backoff: time.Millisecond}
	var errs []error
	fake.Inject(wechattest.PathCentralToken, wechattest.Fault{Reset: true}, 0)
	_, err := src.Token(context.Background())
	errs = append(errs, err)
	fake.ClearFaults()
	fake.Inject(wechattest.PathCentralToken, wechattest.Fault{Truncate: true}, 0)
	_, err = src.Token(context.Background())
	errs = append(errs, err)
	fake.Close()
	_, err = src.Token(context.Background())
	errs = append(errs, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = src.Token(ctx)
	errs = append(errs, err)
	for _, err := range errs {
		if err == nil {
			t.Fatal("want an error")
		}
		if s := err.Error(); strings.Contains(s, "SECRET") || !strings.Contains(s, wechattest.PathCentralToken) {
			t.Errorf("error %q: want the path and no credential", s)
		}
	}
	for _, bad := range []string{"", "ftp://x/y", "http://", "::"} {
		if _, err := (&wechat.URLTokenSource{URL: bad}).Token(context.Background()); err == nil {
			t.Errorf("URL %q: want an error", bad)
		}
	}
}
