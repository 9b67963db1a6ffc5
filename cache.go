package wxqrcode

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"io/fs"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"github.com/maypok86/otter/v2"

	"github.com/wxqrcode/caddy-wxqrcode/internal/imaging"
)

// entry is a cached code, ready to serve: its header values are made
// once, so a hit hashes and formats nothing.
type entry struct {
	data         []byte
	contentType  string
	etag         string
	stored       time.Time
	sha256       string
	lastModified string
	length       string
	// width is the image's width in pixels, 0 if its header does not
	// say: a request for this width is served these bytes untouched.
	width int
	// content is what an official account's code encodes, to draw it at
	// other widths; empty for WeChat's images.
	content string
	// expires is when a temporary code stops working, renewAt when it is
	// no longer served (see setExpiry); zero for codes that never expire.
	expires, renewAt time.Time
	// expiresHeader is the Expires header of a temporary code.
	expiresHeader []string
	// header holds the values of the headers every answer with the entry
	// sends, made once: a hit allocates none of them.
	header entryHeader
}

// entryHeader is an entry's header values. Shared by every answer, so
// never appended to (each has no room beyond its one value).
type entryHeader struct {
	contentType, etag, lastModified, length []string
}

// entryMeta heads each stored entry. It lets a reader check that what it
// loaded is the whole image that was written, whatever the storage.
type entryMeta struct {
	ContentType string    `json:"content_type"`
	SHA256      string    `json:"sha256"`
	Size        int       `json:"size"`
	Stored      time.Time `json:"stored"`
	Request     string    `json:"request"`
	Content     string    `json:"content,omitempty"`
	Expires     time.Time `json:"expires,omitzero"`
}

// codeCache keeps codes in a Caddy storage, one value per code: a JSON
// header line, then the image bytes. One value means one write, so a
// storage that writes atomically (file_system does) never shows half an
// entry, and the header's hash catches one that does.
type codeCache struct {
	storage certmagic.Storage
}

// errCorrupt marks a stored value that is not a whole entry.
var errCorrupt = errors.New("corrupt cache entry")

// load returns the entry for key, nil if there is none or it is due for
// renewal by clock.
func (c *codeCache) load(ctx context.Context, key string, clock *handlerClock) (*entry, error) {
	raw, err := c.storage.Load(ctx, layout.code(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	e, err := decodeEntry(raw)
	if e != nil && e.stale(clock) {
		return nil, nil
	}
	return e, err
}

func decodeEntry(raw []byte) (*entry, error) {
	head, data, ok := bytes.Cut(raw, []byte("\n"))
	var meta entryMeta
	if !ok || json.Unmarshal(head, &meta) != nil {
		return nil, errCorrupt
	}
	sum := sha256.Sum256(data)
	if len(data) != meta.Size || hex.EncodeToString(sum[:]) != meta.SHA256 || !entryWhole(meta.ContentType, data, meta.Content) {
		return nil, errCorrupt
	}
	e := newEntry(data, meta.ContentType, sum, meta.Stored)
	e.content = meta.Content
	e.setExpiry(meta.Expires)
	return e, nil
}

func newEntry(data []byte, contentType string, sum [sha256.Size]byte, stored time.Time) *entry {
	var width int
	if cfg, _, err := image.DecodeConfig(bytes.NewReader(data)); err == nil {
		width = cfg.Width
	}
	e := &entry{
		data:         data,
		contentType:  contentType,
		etag:         `"` + hex.EncodeToString(sum[:16]) + `"`,
		stored:       stored,
		sha256:       hex.EncodeToString(sum[:]),
		lastModified: stored.UTC().Format(http.TimeFormat),
		length:       strconv.Itoa(len(data)),
		width:        width,
	}
	e.header = entryHeader{
		contentType:  []string{e.contentType},
		etag:         []string{e.etag},
		lastModified: []string{e.lastModified},
		length:       []string{e.length},
	}
	return e
}

// prepare checks that img is an image WeChat could have sent, whole and
// at most the master's width (a decompression bomb is refused by its
// header, before any decoding), and makes it an entry stored now; it
// refuses anything else, so nothing else is ever cached.
func prepare(f *fetched, now time.Time) (*entry, error) {
	ct, err := imaging.Check(f.data, masterWidth)
	if err != nil {
		return nil, fmt.Errorf("refusing to cache the reply: %w", err)
	}
	e := newEntry(f.data, ct, sha256.Sum256(f.data), now.UTC().Truncate(time.Second))
	e.content = f.content
	e.setExpiry(f.expiry)
	return e, nil
}

// encodeEntry is the value an entry is stored as: a JSON header line, then
// the image bytes.
func encodeEntry(canonical string, e *entry) ([]byte, error) {
	head, err := json.Marshal(entryMeta{
		ContentType: e.contentType,
		SHA256:      e.sha256,
		Size:        len(e.data),
		Stored:      e.stored,
		Request:     canonical,
		Content:     e.content,
		Expires:     e.expires,
	})
	if err != nil {
		return nil, err
	}
	value := make([]byte, 0, len(head)+1+len(e.data))
	return append(append(append(value, head...), '\n'), e.data...), nil
}

// DefaultMemoryCache is the default bound of the memory cache, in bytes.
const DefaultMemoryCache = 64 << 20

// entryOverhead approximates what an entry costs beyond its bytes and key.
const entryOverhead = 256

// memoryCache holds hot codes in front of the storage, bounded in bytes:
// the masters, keyed by the canonical request, and the widths rendered
// from them, keyed by canonical#width, each in a part of its own, so that
// a stranger asking every width of every code pushes out widths only,
// never the masters that visitors' codes are drawn from.
type memoryCache struct {
	masters, widths *otter.Cache[string, *entry]
}

// widthShare is the part of the memory cache's bytes that widths get.
const widthShare = 4

func newMemoryCache(maxBytes uint64) (*memoryCache, error) {
	weigh := func(key string, e *entry) uint32 {
		return uint32(min(len(key)+len(e.data)+entryOverhead, 1<<32-1))
	}
	widths, err := otter.New(&otter.Options[string, *entry]{MaximumWeight: max(1, maxBytes/widthShare), Weigher: weigh})
	if err != nil {
		return nil, err
	}
	masters, err := otter.New(&otter.Options[string, *entry]{MaximumWeight: max(1, maxBytes-maxBytes/widthShare), Weigher: weigh})
	if err != nil {
		return nil, err
	}
	return &memoryCache{masters: masters, widths: widths}, nil
}

// master returns the master for canonical, unless it is a temporary
// code due for renewal at now: the renewed code will replace it.
func (m *memoryCache) master(canonical string, clock *handlerClock) (*entry, bool) {
	e, ok := m.masters.GetIfPresent(canonical)
	return fresh(e, ok, clock)
}

// width returns a width rendered before, keyed canonical#width.
func (m *memoryCache) width(key string, clock *handlerClock) (*entry, bool) {
	e, ok := m.widths.GetIfPresent(key)
	return fresh(e, ok, clock)
}

func fresh(e *entry, ok bool, clock *handlerClock) (*entry, bool) {
	if ok && e.stale(clock) {
		return nil, false
	}
	return e, ok
}

// purge removes the masters and widths whose key matches, and counts
// them.
func (m *memoryCache) purge(match func(key string) bool) int {
	n := 0
	for _, c := range []*otter.Cache[string, *entry]{m.masters, m.widths} {
		var keys []string
		for k := range c.Keys() {
			if match(k) {
				keys = append(keys, k)
			}
		}
		for _, k := range keys {
			if _, ok := c.Invalidate(k); ok {
				n++
			}
		}
	}
	return n
}

// Destruct lets a memoryCache live in a caddy.UsagePool.
func (m *memoryCache) Destruct() error {
	m.masters.InvalidateAll()
	m.widths.InvalidateAll()
	return nil
}

// memoryPool keeps memory caches across config reloads.
var memoryPool = caddy.NewUsagePool()

// openMemoryCache takes the memory cache for this handler's storage and
// bound from the pool, or makes it.
func (h *Handler) openMemoryCache(ctx caddy.Context) error {
	if h.MemoryCache < 0 {
		return nil
	}
	size := cmp.Or(h.MemoryCache, DefaultMemoryCache)
	h.memKey = fmt.Sprintf("%s|%d", h.storeID, size)
	mem, _, err := memoryPool.LoadOrNew(h.memKey, func() (caddy.Destructor, error) {
		return newMemoryCache(uint64(size))
	})
	if err != nil {
		return err
	}
	h.mem = mem.(*memoryCache)
	return nil
}
