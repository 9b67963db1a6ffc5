package wxqrcode

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/certmagic"
	"github.com/spf13/cobra"
)

func statsCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "stats [--config <file> [--adapter <name>]] [--dir <storage root>]",
		Short: "Shows what the cache holds and the codes generated per app",
		Long: `
Reads the storage the wxqrcode handlers use and prints how many codes it
holds, by api and app, with their size, and for each app the codes the
module had WeChat generate and the last Num-Used WeChat reported.

The storage is the one of --config (a handler's cache_dir or storage, or
the global storage option), or the file_system storage at --dir; by
default Caddy's data directory.
`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			config, _ := cmd.Flags().GetString("config")
			adapter, _ := cmd.Flags().GetString("adapter")
			dir, _ := cmd.Flags().GetString("dir")
			storage, err := statsStorage(config, adapter, dir)
			if err != nil {
				return err
			}
			return printStats(cmd.Context(), storage, cmd.OutOrStdout())
		},
	}
	c.Flags().String("config", "", "a Caddy config whose storage to read")
	c.Flags().String("adapter", "", "the config's adapter (default: caddyfile for files named Caddyfile*)")
	c.Flags().String("dir", "", "the root of a file_system storage to read")
	return c
}

// statsStorage opens the storage named by the flags.
func statsStorage(config, adapter, dir string) (certmagic.Storage, error) {
	if config == "" {
		if dir == "" {
			dir = caddy.AppDataDir()
		}
		return &certmagic.FileStorage{Path: dir}, nil
	}
	raw, err := loadConfig(config, adapter)
	if err != nil {
		return nil, err
	}
	var cfg struct {
		Storage json.RawMessage `json:"storage"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, err
	}
	storageRaw := cfg.Storage
	// A handler's own storage wins; the first one found is read.
	for _, h := range findHandlers(raw) {
		if h.CacheDir != "" {
			return &certmagic.FileStorage{Path: caddy.NewReplacer().ReplaceAll(h.CacheDir, "")}, nil
		}
		if h.StorageRaw != nil {
			storageRaw = h.StorageRaw
			break
		}
	}
	if storageRaw == nil {
		return &certmagic.FileStorage{Path: caddy.AppDataDir()}, nil
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(storageRaw, &fields); err != nil {
		return nil, err
	}
	var name string
	_ = json.Unmarshal(fields["module"], &name)
	delete(fields, "module")
	modRaw, _ := json.Marshal(fields)
	mod, err := ctx.LoadModuleByID("caddy.storage."+name, modRaw)
	if err != nil {
		return nil, err
	}
	return mod.(caddy.StorageConverter).CertMagicStorage()
}

// loadConfig reads a config file as JSON, adapting it if it is not JSON.
func loadConfig(config, adapter string) ([]byte, error) {
	raw, err := os.ReadFile(config)
	if err != nil {
		return nil, err
	}
	if adapter == "" && strings.HasPrefix(path.Base(config), "Caddyfile") {
		adapter = "caddyfile"
	}
	if adapter != "" {
		a := caddyconfig.GetAdapter(adapter)
		if a == nil {
			return nil, fmt.Errorf("no config adapter %q", adapter)
		}
		if raw, _, err = a.Adapt(raw, map[string]any{"filename": config}); err != nil {
			return nil, err
		}
	}
	return raw, nil
}

// findHandlers returns every wxqrcode handler in a JSON config.
func findHandlers(raw []byte) []Handler {
	var found []Handler
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if v["handler"] == "wxqrcode" {
				b, _ := json.Marshal(v)
				var h Handler
				if json.Unmarshal(b, &h) == nil {
					found = append(found, h)
				}
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	var doc any
	if json.Unmarshal(raw, &doc) == nil {
		walk(doc)
	}
	return found
}

// printStats reads the codes and counts in storage.
func printStats(ctx context.Context, storage certmagic.Storage, out io.Writer) error {
	keys, err := storage.List(ctx, strings.TrimSuffix(cachePrefix, "/"), true)
	if err != nil && !isNotExist(err) {
		return fmt.Errorf("listing the codes: %v", err)
	}
	codes := map[string]int{} // "api app" -> codes
	var total, size, corrupt int
	for _, key := range keys {
		if len(path.Base(key)) != 64 {
			continue // locks and other keys
		}
		raw, err := storage.Load(ctx, key)
		if err != nil {
			continue // gone since the listing
		}
		total++
		size += len(raw)
		head, _, _ := bytes.Cut(raw, []byte("\n"))
		var meta entryMeta
		if _, err := decodeEntry(raw); err != nil || json.Unmarshal(head, &meta) != nil {
			corrupt++
			continue
		}
		req, _ := url.ParseQuery(meta.Request)
		codes[req.Get("api")+" "+req.Get("appid")]++
	}
	fmt.Fprintf(out, "storage: %s\n", storageName(storage))
	fmt.Fprintf(out, "codes cached: %d (%.1f MiB)", total, float64(size)/(1<<20))
	if corrupt > 0 {
		fmt.Fprintf(out, ", %d not whole (fetched again when asked for)", corrupt)
	}
	fmt.Fprintln(out)
	for _, k := range sortedKeys(codes) {
		api, app, _ := strings.Cut(k, " ")
		fmt.Fprintf(out, "  %-10s %-20s %d\n", api, app, codes[k])
	}
	docs, err := storage.List(ctx, "wxqrcode/quota", true)
	if err != nil && !isNotExist(err) {
		return fmt.Errorf("listing the counts: %v", err)
	}
	sort.Strings(docs)
	if len(docs) > 0 {
		fmt.Fprintln(out, "codes generated through the module:")
	}
	for _, key := range docs {
		raw, err := storage.Load(ctx, key)
		var doc quotaDoc
		if err != nil || json.Unmarshal(raw, &doc) != nil {
			continue
		}
		app := path.Base(path.Dir(key))
		group := strings.TrimSuffix(path.Base(key), ".json")
		fmt.Fprintf(out, "  %-20s %-10s %d", app, group, doc.Generated)
		if group == groupLimited {
			fmt.Fprintf(out, " of %d", lifetimeBudget)
			if doc.NumUsed > 0 {
				fmt.Fprintf(out, " (WeChat's Num-Used: %d)", doc.NumUsed)
			}
		}
		fmt.Fprintln(out)
	}
	return nil
}

// storageName names a storage by its own String, which storage modules
// write to leave their credentials out, or else by its type: never by its
// fields.
func storageName(storage certmagic.Storage) string {
	if named, ok := storage.(fmt.Stringer); ok {
		return named.String()
	}
	return fmt.Sprintf("%T", storage)
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
