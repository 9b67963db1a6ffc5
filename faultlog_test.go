package wxqrcode

import (
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestFaultLogThrottles(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.WarnLevel)
	f := newFaultLog(zap.New(core))
	for range 100 {
		f.warn("reading the cache")
		f.error("storing a code")
	}
	if n := logs.Len(); n != 2 {
		t.Fatalf("%d lines for 200 faults of two kinds, want 2", n)
	}
	// Once the interval has passed, the next line says how many were held.
	f.last["reading the cache"] = f.last["reading the cache"].Add(-faultLogEvery)
	f.warn("reading the cache")
	all := logs.All()
	if len(all) != 3 || all[2].ContextMap()["same_faults_not_logged"] != int64(99) {
		t.Fatalf("want a third line counting 99 held back, got %v", all)
	}
}
