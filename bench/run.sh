#!/usr/bin/env bash
# Benchmarks caddy-wxqrcode in one run on this machine, on loopback only:
#   1. cached hits of wxqrcode against Caddy's respond (a body of the same
#      size) and file_server (the same image), with wrk, as ratios;
#   2. the latency a miss adds to the upstream's own (the fake WeChat, set
#      to take 20 ms a call), as medians; the route carries a total cap, as
#      the guard rule wants when requests choose the path, so each miss
#      also counts itself in the storage before its call;
#   3. Caddy's resident memory before, after half and after all of 10,000
#      distinct codes (each fetched, then hit), with memory_cache at MEMCACHE:
#      bounded memory stops growing once the memory cache is full.
# Settings (environment): DURATION (5s), ROUNDS (3), CONNS (50),
# MISSES (50), CODES (10000), MEMCACHE (16MiB).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-50}
MISSES=${MISSES:-50}
CODES=${CODES:-10000}
MEMCACHE=${MEMCACHE:-16MiB}

source bench/common.sh

export WX_APPID=wxbe4c400000000000
export WX_SECRET=bench-secret-0123456789abcdef
start_fake -delay 20ms

PORT=$(free_port)
BASE="http://127.0.0.1:$PORT"
mkdir -p "$work/www"

# start_caddy <memory_cache> <storage dir>: runs Caddy on the bench site.
start_caddy() {
	cat >"$work/Caddyfile" <<EOF
{
	admin off
	persist_config off
	storage file_system $2
}
http://127.0.0.1:$PORT {
	bind 127.0.0.1
	wxqrcode /qr {
		appid {env.WX_APPID}
		secret {env.WX_SECRET}
		api_base {env.WX_API_BASE}
		# Requests choose the path: the load must bound the total.
		allow *
		cap 100000000
		memory_cache $1
	}
	handle /static/* {
		root * $work/www
		uri strip_prefix /static
		file_server
	}
	respond /respond "{\$BODY}" 200
}
EOF
	BODY="${BODY:-}" "$work/caddy" run --config "$work/Caddyfile" >"$work/caddy.log" 2>&1 &
	CADDY_PID=$!
	pids+=("$CADDY_PID")
	for _ in $(seq 200); do curl -s -o /dev/null "$BASE/respond" && return; sleep 0.05; done
	echo "bench: caddy did not start" >&2; cat "$work/caddy.log" >&2; exit 1
}
stop_caddy() { kill "$CADDY_PID"; wait "$CADDY_PID" 2>/dev/null || true; }

# The image, fetched once through the module, is what file_server serves;
# respond sends a body of the same size.
start_caddy 64MiB "$work/data"
curl -sf -o "$work/www/code.jpg" "$BASE/qr?path=pages/bench/bench"
stop_caddy
SIZE=$(stat -c %s "$work/www/code.jpg")
export BODY=$(head -c "$SIZE" /dev/zero | tr '\0' x)
start_caddy 64MiB "$work/data"
curl -sf -o /dev/null "$BASE/qr?path=pages/bench/bench" # into memory

rps() { wrk -t2 -c"$CONNS" -d"$DURATION" "$1" | awk '/^Requests\/sec/ {print $2}'; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "hits: $ROUNDS rounds of $DURATION each, $CONNS connections, a $SIZE-byte image"
: >"$work/hit" ; : >"$work/file" ; : >"$work/respond"
for r in $(seq "$ROUNDS"); do
	rps "$BASE/qr?path=pages/bench/bench" >>"$work/hit"
	rps "$BASE/static/code.jpg" >>"$work/file"
	rps "$BASE/respond" >>"$work/respond"
done
HIT=$(median <"$work/hit"); FILE=$(median <"$work/file"); RESP=$(median <"$work/respond")
printf '  wxqrcode hit  %10.0f req/s  (rounds: %s)\n' "$HIT" "$(paste -sd' ' "$work/hit")"
printf '  file_server   %10.0f req/s  (rounds: %s)\n' "$FILE" "$(paste -sd' ' "$work/file")"
printf '  respond       %10.0f req/s  (rounds: %s)\n' "$RESP" "$(paste -sd' ' "$work/respond")"
python3 -c "print('  ratio hit/respond     %.2f (goal >= 0.90)' % ($HIT/$RESP)); print('  ratio hit/file_server %.2f (goal >= 1.20)' % ($HIT/$FILE))"

echo "misses: $MISSES new codes through Caddy against $MISSES direct calls to the fake"
TOKEN=$(curl -s -X POST -d "{\"grant_type\":\"client_credential\",\"appid\":\"$WX_APPID\",\"secret\":\"$WX_SECRET\",\"force_refresh\":false}" \
	"$WX_API_BASE/cgi-bin/stable_token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
: >"$work/direct"; : >"$work/miss"
for i in $(seq "$MISSES"); do
	curl -s -o /dev/null -w '%{time_total}\n' -X POST -d "{\"path\":\"pages/direct/$i\",\"width\":430}" \
		"$WX_API_BASE/cgi-bin/wxaapp/createwxaqrcode?access_token=$TOKEN" >>"$work/direct"
	curl -s -o /dev/null -w '%{time_total}\n' "$BASE/qr?path=pages/miss/$i" >>"$work/miss"
done
unset TOKEN
DIRECT=$(median <"$work/direct"); MISS=$(median <"$work/miss")
python3 -c "print('  upstream alone %.2f ms, miss through Caddy %.2f ms: the module adds %.2f ms (goal < 2)' % ($DIRECT*1e3, $MISS*1e3, ($MISS-$DIRECT)*1e3))"

echo "memory: $CODES distinct codes with memory_cache $MEMCACHE"
stop_caddy
start_caddy "$MEMCACHE" "$work/memdata"
rss() { awk '/^VmRSS/ {print $2}' "/proc/$CADDY_PID/status"; }
codes() { seq "$1" "$2" | xargs -P 16 -I{} curl -s -o /dev/null "$BASE/qr?path=pages/mem/{}&width=280"; }
curl -sf -o /dev/null "$BASE/qr?path=pages/warm/warm&width=280"
BEFORE=$(rss)
HALF=$((CODES / 2))
codes 1 "$HALF"; codes 1 "$HALF" # new codes, then hits on each
MID=$(rss)
codes $((HALF + 1)) "$CODES"; codes $((HALF + 1)) "$CODES"
AFTER=$(rss)
STORED=$(du -sk "$work/memdata/wxqrcode/codes" | cut -f1)
python3 -c "
before, mid, after, stored = $BEFORE, $MID, $AFTER, $STORED
print('  resident %.1f MiB before, %.1f MiB after %d codes, %.1f MiB after %d (%+.1f MiB for the second half)' %
      (before/1024, mid/1024, $HALF, after/1024, $CODES, (after-mid)/1024))
print('  the codes take %.1f MiB in the storage; memory_cache $MEMCACHE' % (stored/1024))"
