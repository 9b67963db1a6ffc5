package wxqrcode

import (
	"context"
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
	v, err := newVisitorCap(Cap{Codes: 10, Per: caddy.Duration(time.Hour), By: "{http.request.header.X-User}"})
	if err != nil {
		t.Fatal(err)
	}
	h := &Handler{visitors: []*visitorCap{v}}
	before := heapInUse()
	for i := range 2000 {
		repl := caddy.NewReplacer()
		repl.Set("http.request.header.X-User", strings.Repeat("u", 64<<10-8)+strconv.Itoa(1e7+i))
		if _, err := h.countVisitor(context.WithValue(context.Background(), caddy.ReplacerCtxKey, repl)); err != nil {
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
