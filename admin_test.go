package wxqrcode_test

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

// adminSite is the built Caddy running a test site, with its admin API on
// loopback.
type adminSite struct {
	*site
	admin  string // the admin API's address, 127.0.0.1:port
	config string // the Caddyfile's path
}

// startAdminSite runs the built Caddy with the directives, storage at dir
// (empty: a new one) and its admin API on a free loopback port.
func startAdminSite(t *testing.T, fake *wechattest.Server, dir, directives string, env ...string) *adminSite {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	port := freePort(t)
	admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	text := strings.Replace(caddyfile(t, port, dir, directives), "admin off", "admin "+admin, 1)
	config := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(config, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &site{t: t, port: port, url: fmt.Sprintf("http://127.0.0.1:%d", port), dir: dir, fake: fake, config: text}
	startProcess(t, dir, s.url+"/", env, "run", "--config", config)
	return &adminSite{site: s, admin: admin, config: config}
}

// wxcmd runs the built Caddy's wxqrcode command with args and stdin, and
// returns its standard output, standard error and exit status.
func wxcmd(t *testing.T, env []string, stdin string, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, builtCaddy(t), append([]string{"wxqrcode"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if exit, ok := err.(*exec.ExitError); ok {
		return out.String(), errOut.String(), exit.ExitCode()
	}
	if err != nil {
		t.Fatalf("wxqrcode %v: %v", args, err)
	}
	return out.String(), errOut.String(), 0
}

// caddy wxqrcode sign asks the running Caddy, where the routes' matchers
// find the handler that serves each URL, in any server whatever the
// URL's port, or --name names it; the URLs it signs are accepted by that
// Caddy, and signing spends no call.
func TestSignThroughAdmin(t *testing.T) {
	fake := newFake(t)
	env := []string{signKeyEnv + "=" + signKey}
	key := "sign_key {env." + signKeyEnv + "}"
	s := startAdminSite(t, fake, "", `@poster path_regexp poster ^/poster/([0-9A-Za-z]{1,32})\.png$
	`+wxBlock(fake, "@poster", "api unlimited\nscene {re.poster.1}\npage pages/item/item\nwidth 600\nis_hyaline true\n"+key)+
		qrBlock(fake, "allow pages/*\n"+key+" "+oldSignKey)+
		wxBlock(fake, "/open", "allow *\ncap 100000")+
		"handle_path /p/* {\n\t"+wxBlock(fake, "", "api unlimited\nscene {path.0}\n"+key)+"}\n\t"+
		"route /late/* {\n\trespond \"first\"\n\t"+wxBlock(fake, "", "name late\n"+key)+"}\n\t"+
		`respond /other "not a code"`, env...)

	// Signed for the route of its host and path, whatever its port: a
	// proxy in front may listen where Caddy does not.
	otherPort := fmt.Sprintf("http://127.0.0.1:%d/qr?path=pages/a", freePort(t))
	urls := []string{
		s.url + "/poster/A1B2C3.png",
		s.url + "/qr?path=pages%2Findex%2Findex&width=300",
		s.url + "/p/id=7", // signed for the stripped path
		s.url + "/other",
		s.url + "/late/x?path=pages/a",
		s.url + "/poster/has-dash.png",
		s.url + "/qr?path=admin/index",
		s.url + "/open?path=pages/a",
		s.url + "/nothing",
		otherPort,
	}
	stdout, stderr, status := wxcmd(t, nil, "", append([]string{"sign", "--address", s.admin}, urls...)...)
	if status != 1 || !strings.Contains(stderr, "6 of 10 URLs not signed") {
		t.Errorf("sign: exit status %d, want 1 saying 6 of 10 URLs not signed:\n%s", status, stderr)
	}
	for _, want := range []string{
		s.url + "/other: no wxqrcode handler serves it: the routes answer 200 first",
		s.url + "/late/x?path=pages/a: no wxqrcode handler serves it: the routes answer 200 first",
		s.url + "/poster/has-dash.png: no wxqrcode handler's route matches it; name one with --name",
		s.url + "/qr?path=admin/index: wxqrcode: this path may not be generated here (see allow) (errcode 990403)",
		s.url + "/open?path=pages/a: the wxqrcode route that serves it has no sign_key",
		s.url + "/nothing: no wxqrcode handler's route matches it; name one with --name",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("sign's errors lack %q:\n%s", want, stderr)
		}
	}
	signed := strings.Fields(stdout)
	if len(signed) != 4 {
		t.Fatalf("sign printed %d URLs, want 4:\n%s", len(signed), stdout)
	}
	if want := strings.Replace(otherPort, "pages/a", "pages%2Fa", 1) + "&sig="; !strings.HasPrefix(signed[3], want) {
		t.Errorf("signed %q for %q, want it signed for the /qr route", signed[3], otherPort)
	}
	if n := fake.CodeCalls(); n != 0 {
		t.Errorf("signing made %d code calls, want none", n)
	}
	for i, tc := range []struct {
		ctype string
		width int
	}{{"image/png", 600}, {"image/jpeg", 300}, {"image/jpeg", 430}} {
		if !strings.HasPrefix(signed[i], urls[i]) && !strings.HasPrefix(signed[i], strings.Split(urls[i], "?")[0]+"?") {
			t.Errorf("signed %q for %q", signed[i], urls[i])
		}
		resp, body := s.get(strings.TrimPrefix(signed[i], s.url))
		assertImage(t, resp, body, tc.ctype, tc.width)
	}
	// A signature holds for its own code only.
	resp, body := s.get(strings.Replace(strings.TrimPrefix(signed[0], s.url), "A1B2C3", "A1B2C4", 1))
	assertError(t, resp, body, 403, 990412)

	// --name reaches a handler that a respond before it hides from the
	// matchers, and signs as that handler would; an unknown name says so.
	stdout, stderr, status = wxcmd(t, nil, "", "sign", "--address", s.admin, "--name", "late", s.url+"/late/x?path=pages/a")
	if status != 0 || !strings.HasPrefix(stdout, s.url+"/late/x?path=pages%2Fa&sig=") {
		t.Errorf("sign --name late: exit status %d, printed %q\n%s", status, stdout, stderr)
	}
	_, stderr, status = wxcmd(t, nil, "", "sign", "--address", s.admin, "--name", "early", s.url+"/late/x?path=pages/a")
	if status != 1 || !strings.Contains(stderr, `no wxqrcode handler is named "early" in the running config's routes`) {
		t.Errorf("sign --name early: exit status %d\n%s", status, stderr)
	}

	// --config finds the admin endpoint in the config, as caddy stop does.
	stdout, stderr, status = wxcmd(t, nil, "", "sign", "--config", s.config, urls[0])
	if status != 0 || strings.TrimSpace(stdout) != signed[0] {
		t.Errorf("sign --config: exit status %d, printed %q, want %q\n%s", status, stdout, signed[0], stderr)
	}

	// prefetch signs through the same endpoint, in batches, and counts
	// what a route refuses by its errcode.
	before := fake.CodeCalls()
	stdout, stderr, status = wxcmd(t, nil, "id=7\nid=8\nid=9\na/b\n", "prefetch", "--address", s.admin, "--url", s.url+"/p/{}")
	if status != 1 || !strings.Contains(stdout, "2 fetched, 1 already cached, 1 failed") || !strings.Contains(stdout, "errcode slash_in_path: 1") {
		t.Errorf("prefetch --address: exit status %d\n%s%s", status, stdout, stderr)
	}
	stdout, stderr, status = wxcmd(t, nil, "pages/x\nadmin/y\n", "prefetch", "--config", s.config, "--url", s.url+"/qr")
	if status != 1 || !strings.Contains(stdout, "1 fetched, 0 already cached, 1 failed") || !strings.Contains(stdout, "errcode 990403: 1") {
		t.Errorf("prefetch --config: exit status %d\n%s%s", status, stdout, stderr)
	}
	stdout, stderr, status = wxcmd(t, nil, "id=7\n", "prefetch", "--address", s.admin, "--url", s.url+"/other?x={}")
	if status != 1 || !strings.Contains(stdout, "errcode no_handler: 1") {
		t.Errorf("prefetch of a URL no wxqrcode handler serves: exit status %d\n%s%s", status, stdout, stderr)
	}
	if n := fake.CodeCalls() - before; n != 3 {
		t.Errorf("prefetch made %d code calls, want 3", n)
	}
}

// No header of a request exempts it from anything: a signed route still
// wants its signature, an open one serves the code.
func TestNoHeaderExempts(t *testing.T) {
	t.Setenv(signKeyEnv, signKey)
	fake := newFake(t)
	s := startSite(t, fake, "", qrBlock(fake, "sign_key {env."+signKeyEnv+"}")+wxBlock(fake, "/open", "allow pages/a"))
	headers := []string{"Probe", "1", "X-Wxqrcode-Probe", "true", "X-Caddy-Probe", "1"}
	for _, method := range []string{"GET", "HEAD"} {
		resp, body := s.do(method, "/qr?path=pages/a", headers...)
		if method == "GET" {
			assertError(t, resp, body, 403, 990411)
		} else if resp.StatusCode != 403 {
			t.Errorf("HEAD of an unsigned URL: %d, want 403", resp.StatusCode)
		}
	}
	resp, body := s.get("/open?path=pages/a", headers...)
	assertImage(t, resp, body, "image/jpeg", 430)
	if n := fake.CodeCalls(); n != 1 {
		t.Errorf("%d code calls, want 1", n)
	}
}

// caddy wxqrcode stats asks the running Caddy, which reads every storage
// its handlers use once: here the global storage of four routes and the
// cache_dir of a fifth.
func TestStatsThroughAdmin(t *testing.T) {
	fake := newFake(t)
	dir, own := t.TempDir(), t.TempDir()
	s := startAdminSite(t, fake, dir, wxBlock(fake, "/q1", "allow *\ncap 100000")+
		wxBlock(fake, "/q2", "allow *\ncap 100000")+
		wxBlock(fake, "/u1", "api unlimited\ncap 100000")+
		wxBlock(fake, "/w1", "api wxacode\nallow *\ncap 100000")+
		wxBlock(fake, "/own", "allow *\ncap 100000\ncache_dir "+own))
	for _, uri := range []string{"/q1?path=pages/a", "/q1?path=pages/b", "/q2?path=pages/c", "/q2?path=pages/a",
		"/u1?scene=s1", "/w1?path=pages/d", "/own?path=pages/e", "/own?path=pages/f"} {
		resp, body := s.get(uri)
		assertImage(t, resp, body, "image/jpeg", 430)
	}
	waitCached(t, dir, 5)
	waitCached(t, own, 2)
	// The counts of generated codes are written every few seconds.
	want := [][]string{
		{"storage: FileStorage:" + dir + "\n", "codes cached: 5 (", "qrcode       " + testAppID + "   3", "unlimited    " + testAppID + "   1",
			"wxacode      " + testAppID + "   1", testAppID + "   limited      4 of 100000", testAppID + "   unlimited    1"},
		{"storage: FileStorage:" + own + "\n", "codes cached: 2 (", "qrcode       " + testAppID + "   2", testAppID + "   limited      2 of 100000"},
	}
	var stdout, stderr string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		var status int
		stdout, stderr, status = wxcmd(t, nil, "", "stats", "--config", s.config)
		if status != 0 {
			t.Fatalf("stats: exit status %d\n%s%s", status, stdout, stderr)
		}
		if statsHave(stdout, want) || time.Now().After(deadline) {
			break
		}
	}
	if !statsHave(stdout, want) {
		t.Errorf("stats, want two storages with %q:\n%s", want, stdout)
	}
}

// statsHave tells whether out reports exactly the storages of want, in
// order, each section holding its strings.
func statsHave(out string, want [][]string) bool {
	sections := strings.Split(strings.TrimSpace(out), "\n\n")
	if len(sections) != len(want) {
		return false
	}
	for i, section := range sections {
		for _, w := range want[i] {
			if !strings.Contains(section+"\n", w) {
				return false
			}
		}
	}
	return true
}

// envWithout is the environment without the named variables.
func envWithout(names ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.Contains(" "+strings.Join(names, " ")+" ", " "+name+" ") {
			env = append(env, kv)
		}
	}
	return env
}

// With WX_APPID unset, the posters example does not load, so nothing can
// sign over an empty appid; signing with no Caddy running checks appid and
// key as Caddy checks them at load, and contradictory flags are refused.
func TestIncompleteEnvironment(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, builtCaddy(t), "validate", "--config", "examples/posters/Caddyfile")
	cmd.Env = append(envWithout("WX_APPID"), "WX_SECRET="+testSecret, "WXQRCODE_SIGN_KEY="+signKey, "WXQRCODE_OLD_SIGN_KEY="+oldSignKey)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), `appid is empty after resolving \"{env.WX_APPID}\"`) {
		t.Errorf("validate with WX_APPID unset: %v\n%s", err, out)
	}

	fake := newFake(t)
	config := filepath.Join(t.TempDir(), "Caddyfile")
	// Without a log block, so that the refusal reaches standard error.
	text := fmt.Sprintf("{\n\tadmin off\n\tpersist_config off\n\tstorage file_system %s\n}\nhttp://127.0.0.1:%d {\n\tbind 127.0.0.1\n\t%s}\n",
		t.TempDir(), freePort(t), strings.Replace(qrBlock(fake, "allow pages/a"), "appid "+testAppID, "appid {env.WX_APPID}", 1))
	if err := os.WriteFile(config, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd = exec.CommandContext(ctx, builtCaddy(t), "run", "--config", config)
	cmd.Env = envWithout("WX_APPID")
	if out, err := cmd.CombinedOutput(); err == nil || ctx.Err() != nil || !strings.Contains(string(out), "appid is empty after resolving") {
		t.Errorf("run with WX_APPID unset: %v, want it to refuse to load\n%s", err, out)
	}

	target := "http://127.0.0.1:8080/qr?path=pages/a"
	clean := []string{"WXQRCODE_SIGN_KEY="}
	for _, tc := range []struct {
		env  []string
		args []string
		want string
	}{
		{[]string{"WXQRCODE_SIGN_KEY=" + signKey}, []string{"sign", "--appid", "{env.WX_APPID}", target}, `appid is empty after resolving "{env.WX_APPID}"`},
		{[]string{"WXQRCODE_SIGN_KEY=" + signKey}, []string{"sign", "--appid", "", target}, "appid is required"},
		{[]string{"WXQRCODE_SIGN_KEY=short"}, []string{"sign", "--appid", testAppID, target}, "sign_key must be at least 16 characters"},
		{clean, []string{"sign", "--appid", testAppID, target}, "WXQRCODE_SIGN_KEY is empty"},
		{[]string{"WXQRCODE_SIGN_KEY=" + signKey}, []string{"sign", "--appid", testAppID, "--api", "qr", target}, "api must be qrcode, wxacode, unlimited, oa_temporary, oa_permanent, link, urllink, scheme or shortlink"},
		{[]string{"WXQRCODE_SIGN_KEY=short"}, []string{"prefetch", "--appid", testAppID, "--url", "http://127.0.0.1:8080/qr"}, "sign_key must be at least 16 characters"},
		{clean, []string{"sign", "--appid", testAppID, "--address", "127.0.0.1:1", target}, "--address does not apply"},
		{clean, []string{"sign", "--key-env", "K", target}, "--key-env does not apply"},
		{clean, []string{"sign", "--api", "unlimited", target}, "--api does not apply"},
		{clean, []string{"sign", "--address", "127.0.0.1:1", "--config", config, target}, "give one"},
		{clean, []string{"sign", "--adapter", "caddyfile", target}, "--adapter applies to --config only"},
		{clean, []string{"prefetch", "--key-env", "K", "--url", "http://127.0.0.1:8080/qr"}, "--key-env does not apply"},
		{clean, []string{"prefetch", "--url", "http://127.0.0.1:8080/p/{}", "--param", "scene"}, "--param does not apply"},
		{clean, []string{"stats", "--dir", t.TempDir(), "--address", "127.0.0.1:1"}, "--address does not apply"},
	} {
		_, stderr, status := wxcmd(t, append(envWithout("WX_APPID"), tc.env...), "", tc.args...)
		if status == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit status %d, want non-zero saying %q:\n%s", tc.args, status, tc.want, stderr)
		}
	}
}

// The signed URL keeps the URL's own parameters.
func TestSignKeepsQuery(t *testing.T) {
	fake := newFake(t)
	s := startAdminSite(t, fake, "", qrBlock(fake, "sign_key {env."+signKeyEnv+"}"), signKeyEnv+"="+signKey)
	stdout, stderr, status := wxcmd(t, nil, "", "sign", "--address", s.admin, s.url+"/qr?path=pages%2Fa%3Fid%3D1&width=280&sig=stale")
	if status != 0 {
		t.Fatalf("sign: exit status %d\n%s", status, stderr)
	}
	u, err := url.Parse(strings.TrimSpace(stdout))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if q.Get("path") != "pages/a?id=1" || q.Get("width") != "280" || len(q["sig"]) != 1 || q.Get("sig") == "stale" {
		t.Errorf("signed %s", u)
	}
	resp, body := s.get(u.RequestURI())
	assertImage(t, resp, body, "image/jpeg", 280)
}
