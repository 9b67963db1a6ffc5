package wxqrcode

import (
	"cmp"
	"fmt"
	"regexp"
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

// hasPlaceholder reports whether a value holds any placeholder.
func hasPlaceholder(value string) bool {
	return placeholder.MatchString(value)
}

// guardMessage says why the codes the handler can make are unbounded and
// which line bounds them, or returns "" when the config pins the codes or
// carries a guard. api is the effective api; the templates may still be
// empty (their defaults read the query).
func (h *Handler) guardMessage(api string) string {
	if len(h.SignKey) > 0 {
		return ""
	}
	why := h.unboundedBy(api)
	if why == "" {
		return ""
	}
	const signHint = "'sign_key {env.WXQRCODE_SIGN_KEY}'"
	if api == apiUnlimited || api == apiOATemporary {
		for _, c := range h.Caps {
			if c.By == "" {
				return ""
			}
		}
		return fmt.Sprintf("api %s has no budget of its own and requests choose %s: "+
			"add a cap such as 'cap 5000 per 1m' (WeChat's own rate), or %s; "+
			"a cap per visitor (by) does not bound what all visitors together make", api, why, signHint)
	}
	for _, c := range h.Caps {
		if c.Per == 0 && c.By == "" {
			return ""
		}
	}
	return fmt.Sprintf("api %s spends WeChat's lifetime budget of 100,000 codes per app and requests choose %s: "+
		"add a total such as 'cap 20000', or %s; a cap per window bounds a rate, not the budget", api, why, signHint)
}

// unboundedBy names what lets requests choose among unboundedly many
// codes, or returns "" when the config pins them.
func (h *Handler) unboundedBy(api string) string {
	if readsRequest(h.LineColor) {
		return fmt.Sprintf("the line colour (line_color %s reads the request)", h.LineColor)
	}
	if isOA(api) {
		// allow matches the scene.
		return h.subjectFree("scene", cmp.Or(h.Scene, "{http.request.uri.query.scene}"))
	}
	if api == apiUnlimited {
		if scene := cmp.Or(h.Scene, defaultScene); readsRequest(scene) {
			return fmt.Sprintf("the scene (scene %s reads the request; allow matches the page, not the scene)", scene)
		}
		return h.subjectFree("page", cmp.Or(h.Page, defaultPage))
	}
	return h.subjectFree("path", cmp.Or(h.Path, defaultPath))
}

// subjectFree names how requests choose the path or page from tmpl, or
// returns "" when tmpl is fixed or allow lists literal subjects only.
func (h *Handler) subjectFree(name, tmpl string) string {
	if !readsRequest(tmpl) {
		return ""
	}
	if len(h.Allow) == 0 {
		return fmt.Sprintf("the %s (%s %s reads the request, and no allow list pins it)", name, name, tmpl)
	}
	for _, g := range h.Allow {
		if strings.Contains(g, "*") {
			return fmt.Sprintf("the %s (allow %s has a *)", name, g)
		}
	}
	return ""
}
