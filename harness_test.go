package wxqrcode_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/wxqrcode/caddy-wxqrcode"
	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

const (
	signKey    = "k1-0123456789abcdef0123456789abcdef"
	oldSignKey = "k0-fedcba9876543210fedcba9876543210"
	signKeyEnv = "WXQRCODE_TEST_SIGN_KEY"
)

// hmacHex signs as a backend would, from docs/signing.md.
func hmacHex(key, canonical string) string {
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(canonical))
	return hex.EncodeToString(mac.Sum(nil))
}

const (
	testAppID  = "wx0123456789abcdef"
	testSecret = "c0ffee5ecret0123456789abcdef0123"
	secretEnv  = "WXQRCODE_TEST_SECRET"
)

// logDir collects the debug logs of every Caddy the tests run; TestMain
// scans them for the secret and every access token issued.
var logDir string

// home is where HOME and the rest point during the run; nothing may be
// written there.
var home *outside

// fakes lists every fake WeChat of the run, for the tokens they issued.
var fakes struct {
	sync.Mutex
	all []*wechattest.Server
}

func TestMain(m *testing.M) {
	var err error
	if logDir, err = os.MkdirTemp("", "wxqrcode-logs-"); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	os.Setenv(secretEnv, testSecret)
	if home, err = enterOutside(); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	code := m.Run()
	if code == 0 {
		if err := scanLogs(); err != nil {
			fmt.Println("FAIL: log scan:", err)
			code = 1
		}
	}
	if err := home.check(); err != nil {
		fmt.Println("FAIL:", err)
		code = 1
	} else {
		fmt.Println("outside check: nothing written to HOME, XDG_*, Caddy's default storage or autosave, or the checkout")
	}
	os.RemoveAll(home.dir)
	if os.Getenv("WXQRCODE_KEEP_LOGS") == "" {
		os.RemoveAll(logDir)
	} else {
		fmt.Println("logs kept in", logDir)
	}
	os.Exit(code)
}

// scanLogs fails if any log holds the secret or a token, and if the logs
// are too thin for that to mean anything.
func scanLogs() error {
	files, err := filepath.Glob(filepath.Join(logDir, "*.log"))
	if err != nil {
		return err
	}
	var all bytes.Buffer
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		all.Write(data)
	}
	logs := all.String()
	fakes.Lock()
	defer fakes.Unlock()
	var tokens []string
	for _, f := range fakes.all {
		tokens = append(tokens, f.Tokens()...)
	}
	if len(tokens) == 0 {
		fmt.Println("log scan: skipped, no test ran Caddy against the fake")
		return nil
	}
	if !strings.Contains(logs, `"fetched code"`) || !strings.Contains(logs, `"level":"debug"`) {
		return fmt.Errorf("only %d bytes of logs from %d files: too thin to scan", len(logs), len(files))
	}
	for _, secret := range []string{testSecret, signKey, oldSignKey} {
		if strings.Contains(logs, secret) {
			return fmt.Errorf("the app secret or a signing key is in the logs")
		}
	}
	for _, tok := range tokens {
		if strings.Contains(logs, tok) {
			return fmt.Errorf("an access token is in the logs")
		}
	}
	fmt.Printf("log scan: %d bytes in %d files, no secret, none of %d tokens\n", len(logs), len(files), len(tokens))
	return nil
}

func newFake(t *testing.T) *wechattest.Server {
	t.Helper()
	fake := wechattest.NewServer(testAppID, testSecret)
	t.Cleanup(fake.Close)
	fakes.Lock()
	fakes.all = append(fakes.all, fake)
	fakes.Unlock()
	return fake
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// site is a Caddy serving one test site on loopback.
type site struct {
	t    *testing.T
	port int
	url  string // http://127.0.0.1:port
	dir  string // the default storage's root
	fake *wechattest.Server
	// config is the site's Caddyfile.
	config string
}

// caddyfile wraps site directives in a Caddyfile for a test: debug logs
// into logDir, default storage at dir. Without the TLS app's storage
// cleaner, which writes Caddy's instance.uuid into the data directory of
// the process: for a Caddy in the test process, outside the test's
// temporary directories.
func caddyfile(t *testing.T, port int, dir, directives string) string {
	logFile := filepath.Join(logDir, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())+".log")
	return fmt.Sprintf(`{
	admin off
	persist_config off
	storage_clean_interval off
	auto_https off
	storage file_system %s
	log {
		output file %s
		level DEBUG
	}
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	%s
}
`, dir, logFile, port, directives)
}

// wxBlock is a wxqrcode block for the fake at matcher, with options (one
// per line).
func wxBlock(fake *wechattest.Server, matcher, options string) string {
	return fmt.Sprintf(`wxqrcode %s {
		appid %s
		secret {env.%s}
		api_base %s
		%s
	}
	`, matcher, testAppID, secretEnv, fake.URL, strings.ReplaceAll(options, "\n", "\n\t\t"))
}

// qrBlock is a createQRCode block at /qr with options.
func qrBlock(fake *wechattest.Server, options string) string {
	return wxBlock(fake, "/qr", options)
}

// startSite runs Caddy in this process with the directives. dir is the
// storage root; empty means a new temporary one.
func startSite(t *testing.T, fake *wechattest.Server, dir, directives string) *site {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	port := freePort(t)
	text := caddyfile(t, port, dir, directives)
	cfg, err := adapt(text)
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("loading config: %v", err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	return &site{t: t, port: port, url: fmt.Sprintf("http://127.0.0.1:%d", port), dir: dir, fake: fake, config: text}
}

func adapt(caddyfile string) ([]byte, error) {
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	return cfg, err
}

// get makes a request and returns the response with its whole body.
func (s *site) do(method, path string, header ...string) (*http.Response, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.url+path, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp, body
}

func (s *site) get(path string, header ...string) (*http.Response, []byte) {
	s.t.Helper()
	return s.do(http.MethodGet, path, header...)
}

// getOK asks until the answer is 200, for up to 5 s: after a token
// endpoint fails, the module waits a moment before asking it again.
func (s *site) getOK(path string) (*http.Response, []byte) {
	s.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, body := s.get(path)
		if resp.StatusCode == http.StatusOK || time.Now().After(deadline) {
			return resp, body
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// entryName is the name of a cache entry; a storage may keep other files
// for a moment, such as those of an atomic write.
var entryName = regexp.MustCompile(`^[0-9a-f]{64}$`)

// cachedFiles lists the cache entries in the storage at dir.
func cachedFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	root := filepath.Join(dir, "wxqrcode", "codes")
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && entryName.MatchString(d.Name()) {
			files = append(files, path)
		}
		if os.IsNotExist(err) {
			return nil
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// waitCached waits for n entries in the storage at dir: a fetched code is
// stored just after its answer.
func waitCached(t *testing.T, dir string, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(cachedFiles(t, dir)) != n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := len(cachedFiles(t, dir)); got != n {
		t.Fatalf("%d cache entries, want %d", got, n)
	}
}

var (
	buildOnce sync.Once
	caddyBin  string
	buildErr  error
)

// builtCaddy builds ./cmd/caddy once per run and returns its path.
func builtCaddy(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "wxqrcode-bin-")
		if err != nil {
			buildErr = err
			return
		}
		caddyBin = filepath.Join(dir, "caddy")
		cmd := exec.Command("go", "build", "-o", caddyBin, "./cmd/caddy")
		cmd.Env = home.goEnv
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/caddy: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return caddyBin
}

// process is the built Caddy running as its own process.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited
	err    error         // how it exited, once exited is closed
}

// startProcess runs the built Caddy with args in dir, its output going to
// a log in logDir, and waits until url answers. The process has a HOME and
// XDG directories of its own, in a temporary directory: its autosave and
// default storage go there.
func startProcess(t *testing.T, dir, url string, env []string, args ...string) *process {
	t.Helper()
	logf, err := os.CreateTemp(logDir, "process-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(builtCaddy(t), args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), ownHome(t.TempDir())...), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	t.Cleanup(p.kill)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			t.Fatalf("caddy exited early: %v (see %s)", p.err, logf.Name())
		default:
		}
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			return p
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("caddy did not answer at %s", url)
	return nil
}

// stop asks Caddy to shut down gracefully and waits for it.
func (p *process) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("caddy did not stop")
	}
}

func (p *process) kill() {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// assertImage checks a successful code response.
func assertImage(t *testing.T, resp *http.Response, body []byte, ctype string, width int) {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, body %s", resp.StatusCode, body)
	}
	if got := resp.Header.Get("Content-Type"); got != ctype {
		t.Errorf("Content-Type %q, want %q", got, ctype)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(body))
	if err != nil || "image/"+format != ctype || cfg.Width != width {
		t.Errorf("decoded %s %dpx (%v), want %s %dpx", format, cfg.Width, err, ctype, width)
	}
	etag := resp.Header.Get("ETag")
	if !strings.HasPrefix(etag, `"`) || len(etag) < 10 {
		t.Errorf("want a strong ETag, got %q", etag)
	}
	if _, err := http.ParseTime(resp.Header.Get("Last-Modified")); err != nil {
		t.Errorf("bad Last-Modified %q", resp.Header.Get("Last-Modified"))
	}
	// Public, or private for a route whose templates read beyond the URL
	// (TestPrivateWhenChosenBeyondURL pins which).
	if got := resp.Header.Get("Cache-Control"); got != "public, max-age=31536000, immutable" && got != "private, max-age=31536000, immutable" {
		t.Errorf("Cache-Control %q", got)
	}
	if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("X-Content-Type-Options %q, want nosniff", got)
	}
}

// assertError checks a JSON error response.
func assertError(t *testing.T, resp *http.Response, body []byte, status, errcode int) {
	t.Helper()
	where := resp.Request.URL.String()
	if len(where) > 120 {
		where = where[:120] + "..."
	}
	if resp.StatusCode != status {
		t.Errorf("%s: status %d, want %d (body %s)", where, resp.StatusCode, status, body)
	}
	if got := resp.Header.Get("Content-Type"); got != "application/json; charset=utf-8" {
		t.Errorf("%s: Content-Type %q", where, got)
	}
	if got := resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("%s: Cache-Control %q, want no-store", where, got)
	}
	if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("%s: X-Content-Type-Options %q, want nosniff", where, got)
	}
	var e struct {
		ErrCode *int   `json:"errcode"`
		ErrMsg  string `json:"errmsg"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.ErrCode == nil || *e.ErrCode != errcode || e.ErrMsg == "" {
		t.Errorf("%s: body %s, want errcode %d", where, body, errcode)
	}
}

func readAll(resp *http.Response) ([]byte, error) {
	var buf bytes.Buffer
	_, err := buf.ReadFrom(resp.Body)
	return buf.Bytes(), err
}

// qrSite starts a site with one qrcode route at /qr, with options, on a
// fake of its own.
func qrSite(t *testing.T, options string) (*site, *wechattest.Server) {
	t.Helper()
	fake := newFake(t)
	return startSite(t, fake, "", qrBlock(fake, options)), fake
}

// startCluster runs n Caddy processes on one file_system storage, each
// serving directives, as the instances of a cluster behind a load
// balancer.
func startCluster(t *testing.T, n int, directives string) []*site {
	t.Helper()
	dir := t.TempDir()
	shared := filepath.Join(dir, "shared")
	var sites []*site
	for i := range n {
		port := freePort(t)
		cfg := filepath.Join(dir, fmt.Sprintf("Caddyfile%d", i))
		if err := os.WriteFile(cfg, []byte(caddyfile(t, port, shared, directives)), 0o600); err != nil {
			t.Fatal(err)
		}
		url := fmt.Sprintf("http://127.0.0.1:%d", port)
		startProcess(t, dir, url+"/", nil, "run", "--config", cfg)
		sites = append(sites, &site{t: t, url: url, dir: shared})
	}
	return sites
}
