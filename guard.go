package wxqrcode

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// placeholder finds Caddy placeholders in a template.
var placeholder = regexp.MustCompile(`\{([^{}]+)\}`)

// readsRequest reports whether a template takes anything from the request:
// any placeholder but the global {env.*} and {file.*}, which are the same
// for every request.
func readsRequest(tmpl string) bool {
	for _, m := range placeholder.FindAllStringSubmatch(tmpl, -1) {
		if !strings.HasPrefix(m[1], "env.") && !strings.HasPrefix(m[1], "file.") {
			return true
		}
	}
	return false
}

// urlPlaceholders are the prefixes of placeholders that read the
// request's URL only, which a shared cache keys its copies by.
var urlPlaceholders = []string{
	"http.request.uri", "http.request.orig_uri", "http.request.host",
	"http.request.hostport", "http.request.port", "http.request.scheme",
}

// readsBeyondURL reports whether a template reads the request outside
// its URL: a header, a cookie, the client's address, a variable or a
// matcher's capture (which may come from a header). Global placeholders
// read nothing of the request.
func readsBeyondURL(tmpl string) bool {
	for _, m := range placeholder.FindAllStringSubmatch(tmpl, -1) {
		name := m[1]
		if strings.HasPrefix(name, "env.") || strings.HasPrefix(name, "file.") {
			continue
		}
		if !slices.ContainsFunc(urlPlaceholders, func(p string) bool {
			return name == p || strings.HasPrefix(name, p+".")
		}) {
			return true
		}
	}
	return false
}

// hasPlaceholder reports whether a value holds any placeholder.
func hasPlaceholder(value string) bool {
	return placeholder.MatchString(value)
}

// checkGuard refuses a config whose requests choose among unboundedly many
// codes without a guard in numbers, saying why and which line bounds them.
// The error names the option at fault (a glob with a *, or a template that
// reads the request) where there is one, so the Caddyfile adapter reports
// its line. api is the effective api; the templates may still be empty
// (their defaults read the query).
func (h *Handler) checkGuard(api string) error {
	// A link code spends nothing; checkDrawing fixes its url's site.
	if len(h.SignKey) > 0 || api == apiLink {
		return nil
	}
	if isWxaLink(api) {
		return h.linkGuard(api)
	}
	why, option, index := h.unboundedBy(api)
	if why == "" {
		return nil
	}
	const signHint = "'sign_key {env.WXQRCODE_SIGN_KEY}'"
	var msg string
	if api == apiUnlimited || api == apiOATemporary {
		for _, c := range h.Caps {
			if c.By == "" {
				return nil
			}
		}
		msg = fmt.Sprintf("api %s has no budget of its own and requests choose %s: "+
			"add a cap such as 'cap 5000 per 1m' (WeChat's own rate), or %s; "+
			"a cap per visitor (by) does not bound what all visitors together make", api, why, signHint)
	} else {
		for _, c := range h.Caps {
			if c.Per == 0 && c.By == "" {
				return nil
			}
		}
		msg = fmt.Sprintf("api %s spends WeChat's lifetime budget of 100,000 codes per app and requests choose %s: "+
			"add a total such as 'cap 20000', or %s; a cap per window bounds a rate, not the budget", api, why, signHint)
	}
	if option == "" {
		return errors.New(msg)
	}
	return &optionError{option, index, errors.New(msg)}
}

// unboundedBy names what lets requests choose among unboundedly many
// codes, and the option at fault ("" for a default template), or returns
// "" when the config pins them.
func (h *Handler) unboundedBy(api string) (why, option string, index int) {
	if readsRequest(h.LineColor) {
		return fmt.Sprintf("the line colour (line_color %s reads the request)", h.LineColor), "line_color", 0
	}
	if isOA(api) {
		// allow matches the scene.
		return h.subjectFree("scene", h.Scene, defaultScene)
	}
	if api == apiUnlimited {
		if scene := cmp.Or(h.Scene, defaultScene); readsRequest(scene) {
			written := "scene " + scene
			if h.Scene == "" {
				written = "the default, " + written + ","
			}
			return fmt.Sprintf("the scene (%s reads the request; allow matches the page, not the scene)", written), setOption("scene", h.Scene), 0
		}
		return h.subjectFree("page", h.Page, defaultPage)
	}
	return h.subjectFree("path", h.Path, defaultPath)
}

// subjectFree names how requests choose the path, page or scene from tmpl
// (def when empty), and the option at fault, or returns "" when the
// template is fixed or allow lists literal subjects only.
func (h *Handler) subjectFree(name, tmpl, def string) (why, option string, index int) {
	t := cmp.Or(tmpl, def)
	if !readsRequest(t) {
		return "", "", 0
	}
	if len(h.Allow) == 0 {
		written := name + " " + t
		if tmpl == "" {
			written = "the default, " + written + ","
		}
		return fmt.Sprintf("the %s (%s reads the request, and no allow list pins it)", name, written), setOption(name, tmpl), 0
	}
	for i, g := range h.Allow {
		if strings.Contains(g, "*") {
			return fmt.Sprintf("the %s (allow %s has a *)", name, g), "allow", i
		}
	}
	return "", "", 0
}

// setOption is name when the user set the option (value), else "": a
// default has no line of its own.
func setOption(name, value string) string {
	if value == "" {
		return ""
	}
	return name
}
