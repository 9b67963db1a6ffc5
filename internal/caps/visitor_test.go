package caps

import (
	"errors"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// A visitor costs the same few bytes however long the template's value:
// 2,000 visitors with 64 KiB headers (128 MiB of values) keep a table of
// a few hundred KiB, not the values.
func TestVisitorKeysFixedSize(t *testing.T) {
	if n := len(visitorKey(strings.Repeat("x", 1<<20))); n != 16 {
		t.Fatalf("a visitor key of %d bytes, want 16", n)
	}
	v, err := newVisitorCap(Cap{Codes: 10, Per: caddy.Duration(time.Hour), By: "{http.request.header.X-User}"}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	s := &Set{visitors: []*visitorCap{v}, now: time.Now}
	before := heapInUse()
	for i := range 2000 {
		value := strings.Repeat("u", 64<<10-8) + strconv.Itoa(1e7+i)
		if _, err := s.TakeVisitor([]string{value}); err != nil {
			t.Fatal(err)
		}
	}
	grown := heapInUse() - before
	if n := v.counts.EstimatedSize(); n != 2000 {
		t.Fatalf("%d visitors counted, want 2000", n)
	}
	if grown > 8<<20 {
		t.Errorf("the table grew the heap by %d bytes for 2,000 visitors, want far below the 128 MiB of their values", grown)
	}
	t.Logf("2,000 visitors: %d bytes of heap, %d per visitor", grown, grown/2000)
	runtime.KeepAlive(v)
}

func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// Each visitor has its own count per window: a full one is refused until
// its window ends, a code given back is spendable again, and the next
// window starts afresh.
func TestVisitorWindows(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Date(2026, 1, 1, 10, 15, 0, 0, time.UTC)}
	c := Cap{Codes: 2, Per: caddy.Duration(time.Hour), By: "{client_ip}"}
	v, err := newVisitorCap(c, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	s := &Set{visitors: []*visitorCap{v}, now: clk.now}
	as := func(value string) []string { return []string{value} }
	for range 2 {
		if _, err := s.TakeVisitor(as("a")); err != nil {
			t.Fatal(err)
		}
	}
	_, err = s.TakeVisitor(as("a"))
	var full *FullError
	if !errors.As(err, &full) || full.RetryAfter != 45*time.Minute {
		t.Fatalf("%v, want full for the 45m left in the window", err)
	}
	if want := "2 new codes per 1h0m0s for each {client_ip} reached"; full.Error() != want {
		t.Errorf("%q, want %q", full.Error(), want)
	}
	if _, err := s.TakeVisitor(as("b")); err != nil {
		t.Fatalf("another visitor: %v", err)
	}
	giveBack, err := s.TakeVisitor(as("b"))
	if err != nil {
		t.Fatal(err)
	}
	giveBack()
	if _, err := s.TakeVisitor(as("b")); err != nil {
		t.Fatalf("after a give-back: %v", err)
	}
	if _, err := s.TakeVisitor(as("b")); err == nil {
		t.Fatal("a third code in the window")
	}
	clk.set(clk.now().Add(time.Hour))
	if _, err := s.TakeVisitor(as("a")); err != nil {
		t.Errorf("the next window: %v", err)
	}
}
