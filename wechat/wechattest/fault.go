package wechattest

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"maps"
	"net"
	"net/http"
	"strconv"
	"time"
)

// endlessLimit caps an Endless body so that a client without a size or
// time limit still gets an end.
const endlessLimit = 60 * time.Second

// Fault replaces the normal reply of a call. Only the set fields apply:
// Delay first, then the first set of Reset, Hang, ErrCode, Status/Body,
// Truncate, Garbage, Endless and Trickle, in that order. A fault with only
// Delay set answers normally after the delay.
//
// Waiting (Delay, Hang, Endless, Trickle) stops as soon as the client goes
// away or the server is closed, and the connection is then dropped, never
// ended as if the reply were complete.
type Fault struct {
	// Delay waits before answering.
	Delay time.Duration
	// ErrCode answers with this WeChat error JSON (HTTP 200). ErrMsg
	// replaces the default message for the code; a " rid: …" suffix is
	// added unless it already has one.
	ErrCode int
	ErrMsg  string
	// Status answers with this HTTP status, Body and ContentType (e.g. 502
	// with an HTML page). Setting only Body answers 200; statuses net/http
	// cannot send (outside 100..999) become 500.
	Status      int
	Body        []byte
	ContentType string
	// Reset closes the TCP connection without any reply, with an RST.
	Reset bool
	// Hang never answers; the call blocks until the client goes away or
	// the server closes.
	Hang bool
	// Truncate sends the real reply's headers with its full Content-Length,
	// then only half of its body, then closes the connection.
	Truncate bool
	// Garbage answers HTTP 200, image/jpeg, with 2048 random bytes that are
	// neither JPEG, PNG nor JSON.
	Garbage bool
	// Endless answers HTTP 200, image/jpeg, with a JPEG start (FF D8 FF)
	// followed by bytes without end; after 60 seconds the connection is
	// dropped.
	Endless bool
	// Trickle sends the real reply's headers at once, then its body one
	// byte every Trickle.
	Trickle time.Duration
}

type queuedFault struct {
	f    Fault
	left int // remaining uses; <= 0 means until ClearFaults
}

// Inject makes the next times requests to path get the fault f; times <= 0
// means every request until ClearFaults. Faults injected on the same path
// queue up and apply in order. They apply to any path, token paths
// included, and replace the reply whatever the request's token; the call
// is still counted in Calls and Requests.
func (s *Server) Inject(path string, f Fault, times int) {
	f.Body = bytes.Clone(f.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[path] = append(s.faults[path], queuedFault{f: f, left: times})
}

// ClearFaults removes every injected fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = map[string][]queuedFault{}
}

func (s *Server) popFaultLocked(path string) (Fault, bool) {
	q := s.faults[path]
	if len(q) == 0 {
		return Fault{}, false
	}
	f := q[0].f
	if q[0].left > 0 {
		q[0].left--
		if q[0].left == 0 {
			if len(q) == 1 {
				delete(s.faults, path)
			} else {
				s.faults[path] = q[1:]
			}
		}
	}
	return f, true
}

// applyFault answers with f. Whenever a fault stops early (the client left,
// Close was called, or Endless ran out) the connection is dropped rather
// than letting net/http finish the response, so no client ever mistakes a
// cut-short reply for a complete one.
func (s *Server) applyFault(w http.ResponseWriter, in inbound, f Fault) {
	ctx := in.r.Context()
	if f.Delay > 0 && !s.sleep(ctx, f.Delay) {
		drop(w, false)
		return
	}
	switch {
	case f.Reset:
		drop(w, true)
	case f.Hang:
		s.sleep(ctx, 0)
		drop(w, false)
	case f.ErrCode != 0:
		writeReply(w, errReply(f.ErrCode, f.ErrMsg))
	case f.Status != 0 || f.Body != nil:
		writeReply(w, statusReply(f))
	case f.Truncate:
		truncate(w, s.reply(in))
	case f.Garbage:
		writeReply(w, garbageReply())
	case f.Endless:
		s.endless(ctx, w)
		drop(w, false)
	case f.Trickle > 0:
		if !s.trickle(ctx, w, s.reply(in), f.Trickle) {
			drop(w, false)
		}
	default:
		writeReply(w, s.reply(in))
	}
}

// sleep waits for d (forever if d <= 0) and reports whether it waited the
// whole time, rather than being cut short by the client or by Close.
func (s *Server) sleep(ctx context.Context, d time.Duration) bool {
	var elapsed <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		elapsed = t.C
	}
	select {
	case <-elapsed:
		return true
	case <-ctx.Done():
	case <-s.done:
	}
	return false
}

func statusReply(f Fault) reply {
	status := f.Status
	switch {
	case status == 0:
		status = http.StatusOK
	case status < 100 || status > 999:
		status = http.StatusInternalServerError
	}
	h := http.Header{}
	if f.ContentType != "" {
		h.Set("Content-Type", f.ContentType)
	}
	return reply{status: status, header: h, body: f.Body}
}

func garbageReply() reply {
	b := make([]byte, 2048)
	// crypto/rand.Read never fails.
	_, _ = rand.Read(b)
	// No JPEG (FF), PNG (89) or JSON text starts with a NUL byte.
	b[0] = 0
	return reply{
		status: http.StatusOK,
		header: http.Header{"Content-Type": {"image/jpeg"}},
		body:   b,
	}
}

// drop closes the connection without finishing the response. With rst it
// sets SO_LINGER 0 first, so the client sees a connection reset rather than
// a clean close.
func drop(w http.ResponseWriter, rst bool) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok && rst {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// truncate writes rep's status and headers, announcing the whole body, then
// half the body, and closes the connection. It writes the raw response
// itself because net/http refuses to send less than a declared
// Content-Length.
func truncate(w http.ResponseWriter, rep reply) {
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	h := rep.header.Clone()
	h.Set("Content-Length", strconv.Itoa(len(rep.body)))
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	fmt.Fprintf(rw, "HTTP/1.1 %d %s\r\n", rep.status, http.StatusText(rep.status))
	_ = h.Write(rw)
	_, _ = rw.WriteString("\r\n")
	_, _ = rw.Write(rep.body[:len(rep.body)/2])
	_ = rw.Flush()
}

// endless streams a JPEG start and then filler until the client goes away,
// the server closes or endlessLimit passes; the caller then drops the
// connection. The write deadline frees a write blocked on a client that
// stopped reading.
func (s *Server) endless(ctx context.Context, w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	deadline := time.Now().Add(endlessLimit)
	_ = rc.SetWriteDeadline(deadline)
	w.Header().Set("Content-Type", "image/jpeg")
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write([]byte{0xff, 0xd8, 0xff, 0xe0}); err != nil {
		return
	}
	filler := bytes.Repeat([]byte{0x5a}, 32<<10)
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-s.done:
			return
		default:
		}
		if _, err := w.Write(filler); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
	}
}

// trickle sends rep's headers at once, then its body one byte per interval,
// and reports whether it sent it all.
func (s *Server) trickle(ctx context.Context, w http.ResponseWriter, rep reply, interval time.Duration) bool {
	rc := http.NewResponseController(w)
	h := w.Header()
	maps.Copy(h, rep.header)
	h.Set("Content-Length", strconv.Itoa(len(rep.body)))
	w.WriteHeader(rep.status)
	if rc.Flush() != nil {
		return false
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := range rep.body {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return false
		case <-s.done:
			return false
		}
		if _, err := w.Write(rep.body[i : i+1]); err != nil {
			return false
		}
		if rc.Flush() != nil {
			return false
		}
	}
	return true
}
