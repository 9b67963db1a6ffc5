package wxqrcode

import "time"

// SetClock makes now the clock of the running handlers that call WeChat
// at apiBase (each test's fake WeChat has a URL of its own, so parallel
// tests keep their time), until restore gives them real time back.
func SetClock(apiBase string, now func() time.Time) (restore func()) {
	handlers.Lock()
	defer handlers.Unlock()
	var set []*Handler
	for h := range handlers.all {
		if h.apiBase == apiBase {
			h.clock.set(now)
			set = append(set, h)
		}
	}
	return func() {
		for _, h := range set {
			h.clock.set(time.Now)
		}
	}
}
