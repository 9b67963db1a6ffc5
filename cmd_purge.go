package wxqrcode

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/spf13/cobra"
)

func purgeCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "purge [--address <admin address> | --config <file> [--adapter <name>]] [--name <handler>] <url>... | purge [...] --appid <appid> --all",
		Short: "Removes codes from the cache",
		Long: `
Removes codes from the cache of the running Caddy, so that the next request
for each asks WeChat again: for example a code made with the wrong
env_version or colour.

With URLs, it removes the code each URL is served (every width of it): the
running Caddy finds the wxqrcode handler (named --name, or the one whose
route's matchers match the URL) and the code of each URL as caddy wxqrcode
sign does, and removes the code from
that handler's storage and from the memory caches in front of it. A URL
needs no signature here.

With --appid <appid> --all, it removes every code of the app from every
storage the running wxqrcode handlers use, and from their memory caches.

It prints what it removed per storage. Counts of generated codes are left
as they are: a purged code asked for again is a new call to WeChat, which
WeChat does not count again for qrcode and wxacode, but the route's caps
and the generated count do. Other instances of a cluster keep the code in
their memory until it is evicted or they restart: purge through each
one's admin endpoint. Browsers and CDNs keep what they were served (a
year, immutable).

The admin endpoint is found as caddy stop finds it: --address, else the
admin listener of the config given by --config, else localhost:2019. The
exit status is 1 when a URL or a storage fails.

Examples:

  caddy wxqrcode purge 'https://posters.example.com/poster/A1B2C3.png'
  caddy wxqrcode purge --address localhost:2019 --appid wx0123456789abcdef --all
`,
		RunE: func(cmd *cobra.Command, args []string) error {
			flags := cmd.Flags()
			all, _ := flags.GetBool("all")
			appID, _ := flags.GetString("appid")
			var req purgeRequest
			var err error
			switch {
			case all && len(args) > 0:
				return fmt.Errorf("--all purges every code of the app: give no URL with it")
			case all && appID == "":
				return fmt.Errorf("--all needs --appid, the app whose codes to purge")
			case all && flags.Changed("name"):
				return fmt.Errorf("--name picks the handler of URLs: --all purges the app's codes from every storage")
			case all:
				if !validAppID(appID) {
					return fmt.Errorf("--appid may hold only letters, digits, _ and - (WeChat appids look like wx0123456789abcdef)")
				}
				req.AppID = appID
			case flags.Changed("appid"):
				return fmt.Errorf("--appid purges every code of the app: say --all too, or give URLs instead")
			case len(args) == 0:
				return fmt.Errorf("give the URLs of the codes to purge, or --appid <appid> --all")
			default:
				req.URLs = args
				if req.Name, err = nameFlag(cmd); err != nil {
					return err
				}
			}
			addr, err := adminAddress(cmd)
			if err != nil {
				return err
			}
			var res purgeResponse
			if err := adminCall(addr, http.MethodPost, "/wxqrcode/purge", req, &res); err != nil {
				return err
			}
			if res.Error != "" {
				return errors.New(res.Error)
			}
			return res.print(cmd.OutOrStdout(), cmd.ErrOrStderr(), req)
		},
	}
	addAdminFlags(c)
	addNameFlag(c)
	c.Flags().String("appid", "", "with --all: the app whose codes to purge")
	c.Flags().Bool("all", false, "purge every code of --appid")
	return c
}

// print writes what the purge removed, and the failures to errOut.
func (res purgeResponse) print(out, errOut io.Writer, req purgeRequest) error {
	failed := 0
	for _, pr := range res.Results {
		switch {
		case pr.Error != "" && pr.ErrCode != 0:
			fmt.Fprintf(errOut, "%s: %s (errcode %d)\n", pr.URL, pr.Error, pr.ErrCode)
		case pr.Error != "":
			fmt.Fprintf(errOut, "%s: %s\n", pr.URL, pr.Error)
		case !pr.Stored && pr.Memory == 0:
			fmt.Fprintf(out, "%s: not cached\n", pr.URL)
		default:
			fmt.Fprintf(out, "%s: removed\n", pr.URL)
		}
		if pr.Error != "" {
			failed++
		}
	}
	if len(res.Storages) == 0 && req.AppID != "" {
		fmt.Fprintln(out, "the running Caddy has no wxqrcode handler")
	}
	storagesFailed := 0
	for _, st := range res.Storages {
		of := ""
		if req.AppID != "" {
			of = " of " + req.AppID
		}
		fmt.Fprintf(out, "storage: %s\n  codes%s removed: %d\n  memory entries removed: %d\n", st.Storage, of, st.Codes, st.Memory)
		if st.Error != "" {
			storagesFailed++
			fmt.Fprintf(errOut, "storage %s: %s\n", st.Storage, st.Error)
		}
	}
	switch {
	case failed > 0:
		return fmt.Errorf("%d of %s not purged", failed, count(len(res.Results), "URL"))
	case storagesFailed > 0:
		return fmt.Errorf("%d of %d storages not purged whole", storagesFailed, len(res.Storages))
	}
	return nil
}
