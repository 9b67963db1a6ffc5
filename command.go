package wxqrcode

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/spf13/cobra"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "wxqrcode",
		Usage: "sign|prefetch|stats|purge ...",
		Short: "Tools for the wxqrcode module",
		Long: `
Tools for the wxqrcode handler.

  sign       prints code URLs with their signatures, for routes with sign_key
  prefetch   fills the cache with the codes of a list
  stats      shows what the cache holds and the codes generated per app
  purge      removes codes from the cache

sign, stats and purge ask the running Caddy through its admin API, so that they
see the config as it runs.
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.AddCommand(signCommand(), prefetchCommand(), statsCommand(), purgeCommand())
		},
	})
}

func signCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "sign [--address <admin address> | --config <file> [--adapter <name>]] <url>...",
		Short: "Prints signed code URLs",
		Long: `
Prints each <url> with the sig parameter that the wxqrcode route serving it
accepts, one a line, in the order given.

By default the running Caddy signs. Through its admin API it runs a GET of
each URL through the server listening on the URL's port, so that Caddy's
own matchers, route groups, subroutes and rewrites (handle_path's too) find
the wxqrcode handler; that handler checks the request as it would serve it
and signs it with its own templates, appid and first sign_key, without
asking WeChat. Handlers before it run as for a visitor; a URL that a
respond, a redirect or a proxy answers first has no wxqrcode handler. The
admin endpoint is found as caddy stop finds it: --address, else the admin
listener of the config given by --config, else localhost:2019.

Second form, with no Caddy running:

  caddy wxqrcode sign --appid <appid> [--api qrcode|wxacode|unlimited|oa_temporary|oa_permanent] [--key-env <var>] <url>...

signs here, for a route with the default templates: the URL's query holds
path (or scene and page), and width, which is checked but not signed. The
key is read from the environment variable named by --key-env (default
WXQRCODE_SIGN_KEY), so it stays out of the shell history. The appid, api and
key are checked as Caddy checks them at load.

A URL that cannot be signed goes to standard error with the reason, and the
exit status is 1.

Examples:

  caddy wxqrcode sign 'https://posters.example.com/poster/A1B2C3.png'
  caddy wxqrcode sign --config /etc/caddy/Caddyfile 'https://posters.example.com/poster/A1B2C3.png'
  WXQRCODE_SIGN_KEY=... caddy wxqrcode sign --appid wx0123456789abcdef \
      'https://shop.example.com/qr?path=pages/item/item%3Fid%3D42'
`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := signerFromFlags(cmd, true)
			if err != nil {
				return err
			}
			results, err := s.sign(args)
			if err != nil {
				return err
			}
			failed := 0
			for i, res := range results {
				switch {
				case res.Error != "":
					failed++
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s\n", args[i], res.reason())
				case !res.Signed:
					failed++
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: the wxqrcode route that serves it has no sign_key, so it needs no signature\n", args[i])
				default:
					fmt.Fprintln(cmd.OutOrStdout(), res.URL)
				}
			}
			if failed > 0 {
				return fmt.Errorf("%d of %s not signed", failed, count(len(args), "URL"))
			}
			return nil
		},
	}
	addAdminFlags(c)
	addOfflineFlags(c)
	return c
}

// reason says why a URL got no code, with the errcode the route would
// answer.
func (res signResult) reason() string {
	if res.ErrCode != 0 {
		return fmt.Sprintf("%s (errcode %d)", res.Error, res.ErrCode)
	}
	return res.Error
}

// addAdminFlags adds the flags that find the running Caddy's admin
// endpoint, as caddy stop and caddy reload have them.
func addAdminFlags(c *cobra.Command) {
	c.Flags().String("address", "", "the admin API's address (default: the admin listener of --config, else localhost:2019)")
	c.Flags().String("config", "", "a config file whose admin listener to ask")
	c.Flags().String("adapter", "", "the adapter of --config")
}

// addOfflineFlags adds the flags that describe a route with the default
// templates, for signing with no Caddy running.
func addOfflineFlags(c *cobra.Command) {
	c.Flags().String("appid", "", "sign here, for a route with the default templates and this appid")
	c.Flags().String("api", apiQRCode, "with --appid: the route's api")
	c.Flags().String("key-env", "WXQRCODE_SIGN_KEY", "with --appid: the environment variable holding the route's sign_key")
}

// adminAddress finds the admin endpoint of the running Caddy as caddy stop
// does: --address, else the admin listener of --config, else the default.
func adminAddress(cmd *cobra.Command) (string, error) {
	flags := cmd.Flags()
	address, _ := flags.GetString("address")
	config, _ := flags.GetString("config")
	adapter, _ := flags.GetString("adapter")
	if address != "" && config != "" {
		return "", fmt.Errorf("--address and --config both name the admin endpoint: give one")
	}
	if adapter != "" && config == "" {
		return "", fmt.Errorf("--adapter applies to --config only")
	}
	addr, err := caddycmd.DetermineAdminAPIAddress(address, nil, config, adapter)
	if err != nil {
		return "", fmt.Errorf("finding the admin endpoint: %v", err)
	}
	return addr, nil
}

// adminCall sends body, as JSON unless nil, to the admin API at addr and
// decodes the answer into out.
func adminCall(addr, method, uri string, body, out any) error {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(raw)
	}
	resp, err := caddycmd.AdminAPIRequest(addr, method, uri, nil, rd)
	if err != nil {
		return fmt.Errorf("asking the running Caddy's admin API at %s (--address names another): %v", addr, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("reading the answer of the admin API at %s: %v", addr, err)
	}
	return nil
}

// refuseFlags refuses any of the named flags that cmd was given, saying
// why they do not apply, rather than ignore them.
func refuseFlags(cmd *cobra.Command, why string, names ...string) error {
	for _, name := range names {
		if cmd.Flags().Changed(name) {
			return fmt.Errorf("--%s does not apply: %s", name, why)
		}
	}
	return nil
}

// signer signs URLs for the routes that serve them.
type signer struct {
	// offline signs here, for a route with the default templates.
	offline *Handler
	// admin is the address of the running Caddy's admin endpoint, whose
	// routes sign.
	admin string
}

// signerFromFlags reads how to sign: --appid, with --api and --key-env,
// signs offline; --address, or --config and --adapter, name the running
// Caddy's admin endpoint. With none of them, it signs through the default
// admin endpoint when adminByDefault is set, and returns nil otherwise.
func signerFromFlags(cmd *cobra.Command, adminByDefault bool) (*signer, error) {
	flags := cmd.Flags()
	if flags.Changed("appid") {
		if err := refuseFlags(cmd, "--appid signs here, with no Caddy running", "address", "config", "adapter"); err != nil {
			return nil, err
		}
		appID, _ := flags.GetString("appid")
		api, _ := flags.GetString("api")
		keyEnv, _ := flags.GetString("key-env")
		key := os.Getenv(keyEnv)
		if key == "" {
			return nil, fmt.Errorf("%s is empty: set it to the route's sign_key, or name another variable with --key-env", keyEnv)
		}
		h, err := offlineHandler(appID, api, key)
		if err != nil {
			return nil, err
		}
		return &signer{offline: h}, nil
	}
	if err := refuseFlags(cmd, "it describes the route for --appid; the running Caddy signs with the route's own", "api", "key-env"); err != nil {
		return nil, err
	}
	if !adminByDefault && !flags.Changed("address") && !flags.Changed("config") && !flags.Changed("adapter") {
		return nil, nil
	}
	addr, err := adminAddress(cmd)
	if err != nil {
		return nil, err
	}
	return &signer{admin: addr}, nil
}

// sign returns what the routes make of urls, in order.
func (s *signer) sign(urls []string) ([]signResult, error) {
	if s.offline != nil {
		results := make([]signResult, len(urls))
		for i, u := range urls {
			results[i] = s.offline.signOffline(u)
		}
		return results, nil
	}
	var res signResponse
	if err := adminCall(s.admin, http.MethodPost, "/wxqrcode/sign", signRequest{URLs: urls}, &res); err != nil {
		return nil, err
	}
	if len(res.Results) != len(urls) {
		return nil, fmt.Errorf("the admin API at %s answered %d results for %d URLs", s.admin, len(res.Results), len(urls))
	}
	return res.Results, nil
}

// offlineHandler is a handler with the default templates that signs with
// key, checked as Provision and Validate check a route at load.
func offlineHandler(appID, api, key string) (*Handler, error) {
	h := &Handler{
		AppID: appID,
		API:   api,
		// Signing needs no secret; a stand-in lets Validate check the rest
		// as it would at load.
		Secret:  "unused",
		SignKey: []string{key},
	}
	h.resolveConfig()
	// The key as given: the route resolved its placeholders once, at load.
	h.signKeys, h.signKeyNames = []string{key}, []string{"the signing key"}
	if err := h.Validate(); err != nil {
		return nil, err
	}
	return h, nil
}

// signOffline checks rawURL as h would serve it and signs it with h's key.
func (h *Handler) signOffline(rawURL string) signResult {
	res := signResult{URL: rawURL}
	r, err := preparedRequest(rawURL)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	u := *r.URL
	cr, err := h.resolveFor(r)
	if err != nil {
		p := asProblem(err)
		res.Error, res.ErrCode = p.message, p.code
		return res
	}
	res.URL, res.Signed = signURL(&u, h.signKeys[0], cr.canonical).String(), true
	return res
}

// preparedRequest is a GET of rawURL as Caddy hands it to its routes.
func preparedRequest(rawURL string) (*http.Request, error) {
	r, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil || (r.URL.Scheme != "http" && r.URL.Scheme != "https") {
		return nil, fmt.Errorf("want an http or https URL, not %q", strings.TrimSpace(rawURL))
	}
	r.RequestURI = r.URL.RequestURI()
	r.RemoteAddr = "127.0.0.1:0"
	return caddyhttp.PrepareRequest(r, caddy.NewReplacer(), nil, nil), nil
}
