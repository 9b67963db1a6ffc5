package wechat

import (
	"strings"
	"unicode/utf8"
)

// Limits WeChat enforces on the code APIs' inputs.
const (
	DefaultWidth       = 430
	MinWidth           = 280
	MaxWidth           = 1280
	MaxQRCodePathLen   = 128
	MaxWxaCodePathLen  = 1024
	MaxSceneLen        = 32
	EnvRelease         = "release"
	EnvTrial           = "trial"
	EnvDevelop         = "develop"
	forbiddenPathParam = "scancode_time"
)

// sceneChars is the alphabet getUnlimited accepts in a scene.
const sceneChars = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$&'()*+,/:;=?@-._~"

// Color is an RGB line colour, each component 0..255.
type Color struct {
	R int `json:"r"`
	G int `json:"g"`
	B int `json:"b"`
}

// QRCodeRequest asks createQRCode (wxacode.createQRCode) for a square code.
// It shares the 100,000-code lifetime budget with WxaCodeRequest.
type QRCodeRequest struct {
	// Path is the page with its query, 1..128 bytes.
	Path string `json:"path"`
	// Width in pixels, 280..1280; 0 means 430.
	Width int `json:"width,omitempty"`
}

// WxaCodeRequest asks get (wxacode.get) for a round mini-program code. It
// shares the 100,000-code lifetime budget with QRCodeRequest.
type WxaCodeRequest struct {
	// Path is the page with its query, 1..1024 bytes.
	Path string `json:"path"`
	// Width in pixels, 280..1280; 0 means 430.
	Width int `json:"width,omitempty"`
	// AutoColor lets WeChat pick the line colour.
	AutoColor bool `json:"auto_color,omitempty"`
	// LineColor applies when AutoColor is false; nil means black.
	LineColor *Color `json:"line_color,omitempty"`
	// IsHyaline asks for a transparent background (a PNG).
	IsHyaline bool `json:"is_hyaline,omitempty"`
	// EnvVersion is release, trial or develop; empty means release.
	EnvVersion string `json:"env_version,omitempty"`
}

// UnlimitedRequest asks getUnlimited (wxacode.getUnlimited) for a code
// carrying a scene. It has no lifetime budget, only a rate limit.
type UnlimitedRequest struct {
	// Scene is 1..32 characters of [0-9A-Za-z!#$&'()*+,/:;=?@-._~].
	Scene string `json:"scene"`
	// Page is a published page without a leading slash or query; empty
	// means the home page.
	Page string `json:"page,omitempty"`
	// CheckPath makes WeChat reject pages that are not published; nil
	// means true.
	CheckPath *bool `json:"check_path,omitempty"`
	// EnvVersion is release, trial or develop; empty means release.
	EnvVersion string `json:"env_version,omitempty"`
	// Width in pixels, 280..1280; 0 means 430.
	Width int `json:"width,omitempty"`
	// AutoColor lets WeChat pick the line colour.
	AutoColor bool `json:"auto_color,omitempty"`
	// LineColor applies when AutoColor is false; nil means black.
	LineColor *Color `json:"line_color,omitempty"`
	// IsHyaline asks for a transparent background (a PNG).
	IsHyaline bool `json:"is_hyaline,omitempty"`
}

// Validate reports, as WeChat would, an input WeChat rejects, so that a bad
// request spends no call. The Error carries WeChat's code for the fault.
func (r *QRCodeRequest) Validate() error {
	if err := validatePath(r.Path, MaxQRCodePathLen); err != nil {
		return err
	}
	return validateWidth(r.Width)
}

// Validate reports, as WeChat would, an input WeChat rejects.
func (r *WxaCodeRequest) Validate() error {
	if err := validatePath(r.Path, MaxWxaCodePathLen); err != nil {
		return err
	}
	return validateLook(r.Width, r.LineColor, r.EnvVersion)
}

// Validate reports, as WeChat would, an input WeChat rejects.
func (r *UnlimitedRequest) Validate() error {
	if n := len(r.Scene); n < 1 || n > MaxSceneLen {
		return localError(CodeSceneLength, "scene must be 1 to %d characters, got %d", MaxSceneLen, n)
	}
	for i := 0; i < len(r.Scene); i++ {
		if strings.IndexByte(sceneChars, r.Scene[i]) < 0 {
			return localError(CodeSceneChars, "scene may contain only 0-9 A-Z a-z and !#$&'()*+,/:;=?@-._~")
		}
	}
	if strings.HasPrefix(r.Page, "/") || strings.ContainsAny(r.Page, "?#") {
		return localError(CodeInvalidPage, "page must not start with / or carry a query")
	}
	if !validText(r.Page) || hasDotDot(r.Page) {
		return localError(CodeInvalidPage, "page must be printable UTF-8 and must not climb with ..")
	}
	return validateLook(r.Width, r.LineColor, r.EnvVersion)
}

func validatePath(path string, max int) error {
	if n := len(path); n < 1 || n > max {
		return localError(CodePathLength, "path must be 1 to %d bytes, got %d", max, n)
	}
	if !validText(path) {
		return localError(CodePathLength, "path must be printable UTF-8")
	}
	if strings.Contains(path, forbiddenPathParam) {
		return localError(CodeScancodeTime, "path must not contain %s", forbiddenPathParam)
	}
	page, _, _ := strings.Cut(path, "?")
	if hasDotDot(page) {
		return localError(CodePathLength, "path must not climb with ..")
	}
	return nil
}

// hasDotDot reports a .. segment, which no mini-program page has.
func hasDotDot(page string) bool {
	for seg := range strings.SplitSeq(page, "/") {
		if seg == ".." {
			return true
		}
	}
	return false
}

func validateWidth(width int) error {
	if width != 0 && (width < MinWidth || width > MaxWidth) {
		return localError(CodeInvalidArgs, "width must be %d to %d, got %d", MinWidth, MaxWidth, width)
	}
	return nil
}

func validateLook(width int, c *Color, env string) error {
	if err := validateWidth(width); err != nil {
		return err
	}
	if c != nil && (outOfByte(c.R) || outOfByte(c.G) || outOfByte(c.B)) {
		return localError(CodeInvalidArgs, "line_color components must be 0 to 255")
	}
	switch env {
	case "", EnvRelease, EnvTrial, EnvDevelop:
		return nil
	}
	return localError(CodeInvalidArgs, "env_version must be release, trial or develop")
}

func outOfByte(n int) bool { return n < 0 || n > 255 }

// validText rejects invalid UTF-8 and control characters, which no page
// path holds and which would only spend a call on an error.
func validText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return true
}
