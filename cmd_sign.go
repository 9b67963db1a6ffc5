package wxqrcode

import (
	"fmt"
	"net/http"
	"os"

	"github.com/spf13/cobra"
)

func signCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "sign [--address <admin address> | --config <file> [--adapter <name>]] [--name <handler>] <url>...",
		Short: "Prints signed code URLs",
		Long: `
Prints each <url> with the sig parameter that the wxqrcode route serving it
accepts, one a line, in the order given.

By default the running Caddy signs. Through its admin API it finds the
wxqrcode handler of each URL: the one named --name (its name option), or
else the first whose route's matchers (host, path, path_regexp, route
groups, subroutes) match the URL, in any server, with handle_path's
stripping applied; no handler runs. That handler checks the request as it
would serve it and signs it with its own templates, appid and first
sign_key, without asking WeChat. A URL that a respond before it answers
has no wxqrcode handler; one whose route only handlers in front can tell
(a proxy, a rewrite other than rewrite and handle_path) needs --name. The
admin endpoint is found as caddy stop finds it: --address, else the admin
listener of the config given by --config, else localhost:2019.

Second form, with no Caddy running:

  caddy wxqrcode sign --appid <appid> [--api qrcode|wxacode|unlimited|oa_temporary|oa_permanent|urllink|scheme|shortlink] [--key-env <var>] <url>...

signs here, for a route with the default templates: the URL's query holds
path (or scene and page; or path and query for links), and width, which
is checked but not signed. The
key is read from the environment variable named by --key-env (default
WXQRCODE_SIGN_KEY), so it stays out of the shell history. The appid, api and
key are checked as Caddy checks them at load.

A URL that cannot be signed goes to standard error with the reason, and the
exit status is 1.

Examples:

  caddy wxqrcode sign 'https://posters.example.com/poster/A1B2C3.png'
  caddy wxqrcode sign --config /etc/caddy/Caddyfile 'https://posters.example.com/poster/A1B2C3.png'
  caddy wxqrcode sign --name posters 'https://posters.example.com/poster/A1B2C3.png'
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
	addNameFlag(c)
	addOfflineFlags(c)
	return c
}

// addNameFlag adds --name, which picks the running Caddy's wxqrcode
// handler by its name option.
func addNameFlag(c *cobra.Command) {
	c.Flags().String("name", "", "the running Caddy's wxqrcode handler of that name (its name option) serves the URLs")
}

// nameFlag is --name, checked as the name option is.
func nameFlag(cmd *cobra.Command) (string, error) {
	name, _ := cmd.Flags().GetString("name")
	if cmd.Flags().Changed("name") && !validName(name) {
		return "", fmt.Errorf("--name may hold only letters, digits, '.', '_' and '-', as the handler's name option")
	}
	return name, nil
}

// addOfflineFlags adds the flags that describe a route with the default
// templates, for signing with no Caddy running.
func addOfflineFlags(c *cobra.Command) {
	c.Flags().String("appid", "", "sign here, for a route with the default templates and this appid")
	c.Flags().String("api", apiQRCode, "with --appid: the route's api")
	c.Flags().String("key-env", "WXQRCODE_SIGN_KEY", "with --appid: the environment variable holding the route's sign_key")
}

// signer signs URLs for the routes that serve them.
type signer struct {
	// offline signs here, for a route with the default templates.
	offline *Handler
	// admin is the address of the running Caddy's admin endpoint, whose
	// handlers sign: the one named name, or the one each URL's route
	// matches.
	admin, name string
}

// signerFromFlags reads how to sign: --appid, with --api and --key-env,
// signs offline; --address, or --config and --adapter, name the running
// Caddy's admin endpoint, and --name its handler. With none of them, it signs through the default
// admin endpoint when adminByDefault is set, and returns nil otherwise.
func signerFromFlags(cmd *cobra.Command, adminByDefault bool) (*signer, error) {
	flags := cmd.Flags()
	if flags.Changed("appid") {
		if err := refuseFlags(cmd, "--appid signs here, with no Caddy running", "address", "config", "adapter", "name"); err != nil {
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
	if !adminByDefault && !flags.Changed("address") && !flags.Changed("config") && !flags.Changed("adapter") && !flags.Changed("name") {
		return nil, nil
	}
	addr, err := adminAddress(cmd)
	if err != nil {
		return nil, err
	}
	name, err := nameFlag(cmd)
	if err != nil {
		return nil, err
	}
	return &signer{admin: addr, name: name}, nil
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
	if err := adminCall(s.admin, http.MethodPost, "/wxqrcode/sign", signRequest{URLs: urls, Name: s.name}, &res); err != nil {
		return nil, err
	}
	if len(res.Results) != len(urls) {
		return nil, fmt.Errorf("the admin API at %s answered %d results for %d URLs", s.admin, len(res.Results), len(urls))
	}
	return res.Results, nil
}
