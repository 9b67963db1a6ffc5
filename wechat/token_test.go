package wechat

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// stubSource issues a new token on each call, living two seconds on the
// test's clock, or fails with err.
type stubSource struct {
	mu    sync.Mutex
	now   time.Time
	calls int
	err   error
}

func (s *stubSource) clock() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now
}

func (s *stubSource) advance(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = s.now.Add(d)
}

func (s *stubSource) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

func (s *stubSource) Token(context.Context) (*Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.err != nil {
		return nil, s.err
	}
	return &Token{AccessToken: fmt.Sprintf("token-%d", s.calls), Expiry: s.now.Add(2 * time.Second)}, nil
}

func reuseWithClock(src *stubSource) *ReuseTokenSource {
	r := NewReuseTokenSource(src)
	r.now = src.clock
	return r
}

func TestRefreshTime(t *testing.T) {
	t.Parallel()
	fetched := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct{ life, early time.Duration }{
		{2 * time.Hour, 5 * time.Minute}, // capped
		{30 * time.Minute, 3 * time.Minute},
		{2 * time.Second, 200 * time.Millisecond},
	} {
		if got := fetched.Add(tt.life).Sub(RefreshTime(fetched, fetched.Add(tt.life))); got != tt.early {
			t.Errorf("life %v: refreshed %v early, want %v", tt.life, got, tt.early)
		}
	}
}

// A token is reused until a tenth of its life before it expires, then
// replaced.
func TestReuseUntilEarlyRefresh(t *testing.T) {
	t.Parallel()
	src := &stubSource{now: time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)}
	r := reuseWithClock(src)
	for _, step := range []struct {
		after time.Duration
		want  string
	}{
		{0, "token-1"},
		{1500 * time.Millisecond, "token-1"},
		{350 * time.Millisecond, "token-2"}, // inside the last 0.2 s, not expired
	} {
		src.advance(step.after)
		tok, err := r.Token(context.Background())
		if err != nil || tok.AccessToken != step.want {
			t.Fatalf("after %v more: %v, %v, want %s", step.after, tok, err, step.want)
		}
	}
}

// A refresh that fails early leaves the token in use until it expires;
// after that the error reaches the caller.
func TestFailedEarlyRefreshKeepsValidToken(t *testing.T) {
	t.Parallel()
	src := &stubSource{now: time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)}
	r := reuseWithClock(src)
	first, err := r.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	src.advance(1850 * time.Millisecond)
	down := errors.New("token endpoint down")
	src.fail(down)
	tok, err := r.Token(context.Background())
	if err != nil || tok.AccessToken != first.AccessToken {
		t.Fatalf("want the unexpired token while the endpoint fails, got %v", err)
	}
	if src.calls != 2 {
		t.Errorf("%d token calls, want 2 (the failed refresh)", src.calls)
	}
	src.advance(300 * time.Millisecond) // now expired, and past the backoff
	if _, err := r.Token(context.Background()); !errors.Is(err, down) {
		t.Fatalf("want the endpoint's error once the token has expired, got %v", err)
	}
}
