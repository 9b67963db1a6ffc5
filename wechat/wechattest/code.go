package wechattest

import (
	"crypto/sha256"
	"encoding/json"
	"image/color"
	"net/http"
	"strconv"
	"strings"

	"github.com/boombuler/barcode/qr"
)

// sceneChars are the characters WeChat accepts in a getwxacodeunlimit scene.
const sceneChars = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$&'()*+,/:;=?@-._~"

// rgb is WeChat's line_color object.
type rgb struct {
	R int `json:"r"`
	G int `json:"g"`
	B int `json:"b"`
}

type qrcodeRequest struct {
	Path  string `json:"path"`
	Width int    `json:"width"`
}

type wxacodeRequest struct {
	Path       string `json:"path"`
	Width      int    `json:"width"`
	AutoColor  bool   `json:"auto_color"`
	LineColor  rgb    `json:"line_color"`
	IsHyaline  bool   `json:"is_hyaline"`
	EnvVersion string `json:"env_version"`
}

type unlimitedRequest struct {
	Scene      string `json:"scene"`
	Page       string `json:"page"`
	CheckPath  *bool  `json:"check_path"` // nil means WeChat's default, true
	EnvVersion string `json:"env_version"`
	Width      int    `json:"width"`
	AutoColor  bool   `json:"auto_color"`
	LineColor  rgb    `json:"line_color"`
	IsHyaline  bool   `json:"is_hyaline"`
}

func (s *Server) serveQRCode(in inbound) reply {
	var req qrcodeRequest
	if rep, ok := s.precheck(in, &req); !ok {
		return rep
	}
	if n := len(req.Path); n == 0 || n > 128 {
		return errReply(40159, "")
	}
	if strings.Contains(req.Path, "scancode_time") {
		return errReply(85096, "")
	}
	req.Width = clampWidth(req.Width)
	key := codeKey(PathQRCode, req)
	if _, ok := s.countCode(key); !ok {
		return errReply(45029, "")
	}
	return imageReply(key, req.Path, qr.M, req.Width, false, rgb{}, false)
}

func (s *Server) serveWxaCode(in inbound) reply {
	var req wxacodeRequest
	if rep, ok := s.precheck(in, &req); !ok {
		return rep
	}
	if n := len(req.Path); n == 0 || n > 1024 {
		return errReply(40159, "")
	}
	if strings.Contains(req.Path, "scancode_time") {
		return errReply(85096, "")
	}
	env, ok := envVersion(req.EnvVersion)
	if !ok {
		return errReply(40097, "")
	}
	req.EnvVersion = env
	req.Width = clampWidth(req.Width)
	req.LineColor = req.LineColor.clamp()
	key := codeKey(PathWxaCode, req)
	used, ok := s.countCode(key)
	if !ok {
		return errReply(45029, "")
	}
	rep := imageReply(key, req.Path, qr.H, req.Width, req.AutoColor, req.LineColor, req.IsHyaline)
	rep.header.Set("Num-Used", strconv.Itoa(used))
	return rep
}

func (s *Server) serveUnlimited(in inbound) reply {
	var req unlimitedRequest
	if rep, ok := s.precheck(in, &req); !ok {
		return rep
	}
	if n := len(req.Scene); n == 0 || n > 32 {
		return errReply(40169, "")
	}
	for i := range len(req.Scene) {
		if strings.IndexByte(sceneChars, req.Scene[i]) < 0 {
			return errReply(40129, "")
		}
	}
	env, ok := envVersion(req.EnvVersion)
	if !ok {
		return errReply(40097, "")
	}
	req.EnvVersion = env
	if strings.HasPrefix(req.Page, "/") || strings.Contains(req.Page, "?") {
		return errReply(41030, "")
	}
	checkPath := req.CheckPath == nil || *req.CheckPath
	req.CheckPath = &checkPath
	if checkPath && env == "release" && req.Page != "" && !s.published(req.Page) {
		return errReply(41030, "")
	}
	req.Width = clampWidth(req.Width)
	req.LineColor = req.LineColor.clamp()
	key := codeKey(PathUnlimited, req)
	return imageReply(key, UnlimitedContent(req.Page, req.Scene), qr.H, req.Width, req.AutoColor, req.LineColor, req.IsHyaline)
}

// precheck applies what every code API checks before reading its
// parameters, in WeChat's order: method, token, then body format.
func (s *Server) precheck(in inbound, req any) (reply, bool) {
	if in.r.Method != http.MethodPost {
		return errReply(43002, ""), false
	}
	if code := s.authorize(in); code != 0 {
		return errReply(code, ""), false
	}
	if !in.decode(req) {
		return errReply(47001, ""), false
	}
	return reply{}, true
}

func (s *Server) published(page string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pages[page]
}

// countCode records a code of the limited APIs and returns how many distinct
// ones exist. A code already generated is free; a new one past the limit is
// refused.
func (s *Server) countCode(key string) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.generated[key] {
		if len(s.generated) >= s.limit {
			return len(s.generated), false
		}
		s.generated[key] = true
	}
	return len(s.generated), true
}

// codeKey identifies a code by its API and normalized parameters, so that
// requests WeChat treats as the same code (say, width absent or 430) match.
func codeKey(api string, normalized any) string {
	// The request structs hold only strings, numbers and bools.
	b, _ := json.Marshal(normalized)
	return api + " " + string(b)
}

// envVersion resolves env_version, whose absence means release.
func envVersion(v string) (string, bool) {
	switch v {
	case "":
		return "release", true
	case "release", "trial", "develop":
		return v, true
	}
	return "", false
}

// clampWidth applies WeChat's silent width rules: 0 means 430, anything
// else is held within 280..1280.
func clampWidth(w int) int {
	switch {
	case w == 0:
		return 430
	case w < 280:
		return 280
	case w > 1280:
		return 1280
	}
	return w
}

func (c rgb) clamp() rgb {
	return rgb{clampByte(c.R), clampByte(c.G), clampByte(c.B)}
}

func clampByte(v int) int {
	return min(max(v, 0), 255)
}

// UnlimitedContent is what the fake's getwxacodeunlimit codes hold, so
// that a test can tell what it scanned.
func UnlimitedContent(page, scene string) string {
	return page + "?scene=" + scene
}

// imageReply renders a QR code of content, the code named by key, at
// width: createQRCode's at level M, the mini-program codes' at level H. The key covers every parameter, so its hash names the bytes and
// renders can be cached by it. auto_color picks a dark colour of the
// fake's own; otherwise line_color is used.
func imageReply(key, content string, level qr.ErrorCorrectionLevel, width int, autoColor bool, line rgb, hyaline bool) reply {
	seed := sha256.Sum256([]byte(key))
	fg := color.NRGBA{R: uint8(line.R), G: uint8(line.G), B: uint8(line.B), A: 0xff}
	if autoColor {
		fg = color.NRGBA{R: seed[0] % 128, G: seed[1] % 128, B: seed[2] % 128, A: 0xff}
	}
	body := cachedRender(seed, func() []byte { return renderCode(content, level, width, fg, hyaline) })
	return reply{
		status: http.StatusOK,
		// WeChat labels even the transparent PNG as image/jpeg.
		header: http.Header{"Content-Type": {"image/jpeg"}},
		body:   body,
	}
}
