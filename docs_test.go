package wxqrcode_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wxqrcode/caddy-wxqrcode/wechat/wechattest"
)

// The fake as the README starts it: go run ./bench/fakewechat -secret
// s3cret, whose app is wxbe4c400000000000.
const (
	docsAppID  = "wxbe4c400000000000"
	docsSecret = "s3cret"
	// docsSignKey is the key docs/commands.md gives Caddy: the worked
	// example's key of docs/signing.md.
	docsSignKey = "0123456789abcdef0123"
)

// docCommand is a command a document prints after "$ ", and the output
// it prints under it.
type docCommand struct {
	line int
	cmd  string
	want []string
}

// docCommands reads the shell sessions of a Markdown document: its
// indented blocks whose first line starts with "$ ".
func docCommands(t *testing.T, file string) []docCommand {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var cmds []docCommand
	inSession, cont := false, false
	for i, line := range strings.Split(string(raw), "\n") {
		text, indented := strings.CutPrefix(line, "    ")
		switch {
		case !indented && line != "":
			inSession = false
		case line == "":
			// a blank line inside a block belongs to the output
			if inSession && len(cmds) > 0 {
				cmds[len(cmds)-1].want = append(cmds[len(cmds)-1].want, "")
			}
		case cont:
			cmds[len(cmds)-1].cmd += "\n" + text
		case strings.HasPrefix(text, "$ "):
			inSession = true
			cmds = append(cmds, docCommand{line: i + 1, cmd: text[2:]})
		case inSession:
			cmds[len(cmds)-1].want = append(cmds[len(cmds)-1].want, text)
		}
		cont = indented && inSession && strings.HasSuffix(text, "\\")
	}
	for i := range cmds {
		for len(cmds[i].want) > 0 && cmds[i].want[len(cmds[i].want)-1] == "" {
			cmds[i].want = cmds[i].want[:len(cmds[i].want)-1]
		}
	}
	return cmds
}

// docShell runs the commands of a document, as a reader would, in dir,
// with the built Caddy as caddy on the PATH. The ports the documents
// print, 8080 and the admin endpoint's 2019, are free ports here.
type docShell struct {
	t     *testing.T
	dir   string
	env   []string
	site  string // 127.0.0.1:port, for 127.0.0.1:8080
	admin string // 127.0.0.1:port, for localhost:2019
	// replace rewrites what a command names that this machine has
	// elsewhere, such as a key file.
	replace []string
}

func newDocShell(t *testing.T, env ...string) *docShell {
	t.Helper()
	dir := t.TempDir()
	bin := t.TempDir()
	if err := os.Symlink(builtCaddy(t), filepath.Join(bin, "caddy")); err != nil {
		t.Fatal(err)
	}
	env = append(append(os.Environ(), ownHome(t.TempDir())...), env...)
	env = append(env, "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	return &docShell{t: t, dir: dir, env: env,
		site: fmt.Sprintf("127.0.0.1:%d", freePort(t)), admin: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
}

// bareCommand is a command that finds the admin endpoint by default.
var bareCommand = regexp.MustCompile(`^caddy wxqrcode (sign|stats|purge)( |$)`)

// run runs c and compares its standard output and error, together, with
// what the document prints, after normalize. Stats may trail what was
// just made by a few seconds, so they are asked again for a while.
func (s *docShell) run(file string, c docCommand) {
	s.t.Helper()
	cmd := strings.NewReplacer(append([]string{"127.0.0.1:8080", s.site, "localhost:2019", s.admin}, s.replace...)...).Replace(c.cmd)
	// purge's --appid names what to purge; sign's signs here.
	offline := strings.Contains(cmd, "--appid") && !strings.Contains(cmd, "--all")
	if !strings.Contains(cmd, "--address") && !strings.Contains(cmd, "--config") && !strings.Contains(cmd, "--dir") && !offline {
		cmd = bareCommand.ReplaceAllString(cmd, "caddy wxqrcode $1 --address "+s.admin+"$2")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := s.output(cmd)
		if match(c.want, got) {
			return
		}
		if !strings.Contains(cmd, "wxqrcode stats") || time.Now().After(deadline) {
			s.t.Errorf("%s:%d: $ %s\nprints (normalized):\n%s\nthe document says:\n%s",
				file, c.line, c.cmd, strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (s *docShell) output(cmd string) []string {
	s.t.Helper()
	sh := exec.Command("bash", "-c", cmd)
	sh.Dir, sh.Env = s.dir, s.env
	var out bytes.Buffer
	sh.Stdout, sh.Stderr = &out, &out
	_ = sh.Run() // the exit status shows in the output: Error: ...
	text := strings.NewReplacer(s.site, "127.0.0.1:8080", s.admin, "localhost:2019", "\r", "").Replace(out.String())
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		if strings.HasPrefix(l, `{"level":`) {
			continue // Caddy's log, not the command's output
		}
		lines = append(lines, normalize(l))
	}
	return lines
}

var (
	rid      = regexp.MustCompile(`rid: [0-9a-f-]+`)
	duration = regexp.MustCompile(`\b[0-9]+(\.[0-9]+)?(ns|µs|ms|s)\b`)
	// headerTime is a header that holds a time, or a length.
	headerTime = regexp.MustCompile(`^(Date|Last-Modified|Etag|Content-Length): .*`)
)

// normalize replaces what differs from run to run: WeChat's rids, times
// taken, dates.
func normalize(line string) string {
	line = rid.ReplaceAllString(line, "rid: <rid>")
	line = duration.ReplaceAllString(line, "<time>")
	return headerTime.ReplaceAllString(line, "$1: <value>")
}

// match reports whether got is want, where a want line "..." stands for
// any lines.
func match(want, got []string) bool {
	normalized := make([]string, len(want))
	for i, w := range want {
		normalized[i] = normalize(w)
	}
	return matchLines(normalized, got)
}

func matchLines(want, got []string) bool {
	if len(want) == 0 {
		return len(got) == 0
	}
	if want[0] == "..." {
		for i := 0; i <= len(got); i++ {
			if matchLines(want[1:], got[i:]) {
				return true
			}
		}
		return false
	}
	return len(got) > 0 && want[0] == got[0] && matchLines(want[1:], got[1:])
}

// docFake is the fake WeChat as the README starts it.
func docFake(t *testing.T) *wechattest.Server {
	t.Helper()
	fake := wechattest.NewServer(docsAppID, docsSecret)
	t.Cleanup(fake.Close)
	return fake
}

// needCurl skips a test without curl, unless CI asks for it.
func needCurl(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		if os.Getenv("WXQRCODE_REQUIRE_CURL") != "" {
			t.Fatal("curl is not on the PATH, and WXQRCODE_REQUIRE_CURL is set")
		}
		t.Skip("needs curl, as the documents' examples do")
	}
}

// docCaddyfile is the first caddyfile block of a document.
func docCaddyfile(t *testing.T, file string) string {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(raw), "```caddyfile\n")
	block, _, ok2 := strings.Cut(block, "```")
	if !ok || !ok2 {
		t.Fatalf("%s has no caddyfile block", file)
	}
	return block
}

// TestDocsCommands runs the commands of docs/commands.md in order, as
// printed, against its Caddyfile and the fake WeChat as the README starts
// it, and compares what they print with what the document prints.
func TestDocsCommands(t *testing.T) {
	needCurl(t)
	const doc = "docs/commands.md"
	fake := docFake(t)
	sh := newDocShell(t)
	keyFile := filepath.Join(t.TempDir(), "wxqrcode_sign_key")
	if err := os.WriteFile(keyFile, []byte(docsSignKey), 0o600); err != nil {
		t.Fatal(err)
	}
	sh.replace = []string{"/run/secrets/wxqrcode_sign_key", keyFile}
	config := filepath.Join(sh.dir, "Caddyfile")
	if err := os.WriteFile(config, []byte(docCaddyfile(t, doc)), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"WX_APPID=" + docsAppID, "WX_SECRET=" + docsSecret, "WXQRCODE_SIGN_KEY=" + docsSignKey,
		"WX_API_BASE=" + fake.URL, "CADDY_ADMIN=" + sh.admin}
	// caddy start, with the site on a free port.
	text, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(config, bytes.ReplaceAll(text, []byte("127.0.0.1:8080"), []byte(sh.site)), 0o600); err != nil {
		t.Fatal(err)
	}
	startProcess(t, sh.dir, "http://"+sh.site+"/", env, "run", "--config", config)

	cmds := docCommands(t, doc)
	if len(cmds) < 10 {
		t.Fatalf("found %d commands in %s", len(cmds), doc)
	}
	for _, c := range cmds {
		if strings.HasPrefix(c.cmd, "caddy st") || strings.HasPrefix(c.cmd, "caddy reload") {
			t.Fatalf("%s:%d: $ %s: the sessions run against the one Caddy the test starts", doc, c.line, c.cmd)
		}
		if strings.HasPrefix(c.cmd, "cat ") {
			// The document shows the file: write it.
			name := strings.TrimPrefix(c.cmd, "cat ")
			if err := os.WriteFile(filepath.Join(sh.dir, name), []byte(strings.Join(c.want, "\n")+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		sh.run(doc, c)
	}
}

var caddyRequire = regexp.MustCompile(`(?m)^\s*github\.com/caddyserver/caddy/v2 (v\S+)`)

// TestDocsREADME runs the README's session on Caddyfile.example against the
// fake as the README starts it, and checks the guard refusal it prints and
// the Caddy version its xcaddy line builds.
func TestDocsREADME(t *testing.T) {
	needCurl(t)
	const doc = "README.md"
	fake := docFake(t)
	sh := newDocShell(t)
	example, err := filepath.Abs("Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"WX_APPID=" + docsAppID, "WX_SECRET=" + docsSecret, "WX_API_BASE=" + fake.URL,
		"WXQRCODE_ADDR=" + sh.site, "CADDY_ADMIN=" + sh.admin}
	startProcess(t, sh.dir, "http://"+sh.site+"/", env, "run", "--config", example)
	cmds := docCommands(t, doc)
	if len(cmds) < 3 {
		t.Fatalf("found %d commands in %s", len(cmds), doc)
	}
	for _, c := range cmds {
		sh.run(doc, c)
	}

	raw, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)

	// The guard refusal, for the README's Caddyfile without its total cap.
	config := strings.Replace(docCaddyfile(t, doc), "\t\tcap 20000", "\t\t#", 1)
	_, err = adapt(config)
	_, printed, _ := strings.Cut(readme, "the Caddyfile above without its `cap 20000` line:\n\n")
	printed, _, _ = strings.Cut(printed, "\n\n")
	if err == nil || !strings.HasSuffix(strings.Join(strings.Fields(err.Error()), " "), strings.Join(strings.Fields(printed), " ")) {
		t.Errorf("%s prints the guard refusal\n%s\nCaddy says\n%v", doc, printed, err)
	}

	// xcaddy builds the Caddy version that go.mod requires, which the
	// tests and .ci/run use.
	gomod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := caddyRequire.FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod requires no github.com/caddyserver/caddy/v2")
	}
	want := "xcaddy build " + string(m[1]) + " --with github.com/wxqrcode/caddy-wxqrcode@v0.0.0=."
	if !strings.Contains(readme, "    "+want+"\n") {
		t.Errorf("%s does not build as .ci/run does: want the line\n    %s", doc, want)
	}
}
