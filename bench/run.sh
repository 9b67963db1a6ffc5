#!/usr/bin/env bash
# Benchmarks caddy-wxqrcode in one run on this machine, on loopback only:
#   1. cached hits of wxqrcode, of a rendered width (430) and of the master
#      (1280), against Caddy's respond (a body of the same size each) and
#      file_server (the same image), with wrk, as ratios;
#   2. the latency a miss adds to the upstream's own (the fake WeChat, set
#      to take 20 ms a call), as medians, at the master's width; and the
#      miss of a rendered width, which adds the render. The route carries
#      a total cap, as the guard rule wants when requests choose the path,
#      so each miss also takes a code from the cap's lease;
#   3. Caddy's resident memory before, after half and after all of 10,000
#      distinct codes (each fetched, then hit), with memory_cache at MEMCACHE:
#      bounded memory stops growing once the memory cache is full;
#   4. the same with 1,000 codes in 5 widths each.
# Settings (environment): DURATION (5s), ROUNDS (3), CONNS (50),
# MISSES (50), CODES (10000), WCODES (1000), MEMCACHE (16MiB).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-50}
MISSES=${MISSES:-50}
CODES=${CODES:-10000}
WCODES=${WCODES:-1000}
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
	respond /respond-master "{\$MASTER_BODY}" 200
}
EOF
	BODY="${BODY:-}" MASTER_BODY="${MASTER_BODY:-}" "$work/caddy" run --config "$work/Caddyfile" >"$work/caddy.log" 2>&1 &
	CADDY_PID=$!
	pids+=("$CADDY_PID")
	for _ in $(seq 200); do curl -s -o /dev/null "$BASE/respond" && return; sleep 0.05; done
	echo "bench: caddy did not start" >&2; cat "$work/caddy.log" >&2; exit 1
}
stop_caddy() { kill "$CADDY_PID"; wait "$CADDY_PID" 2>/dev/null || true; }

# The image at 430 pixels, fetched once through the module, is what
# file_server serves; respond sends a body of the same size, and another
# of the master's size.
MASTER="$BASE/qr?path=pages/bench/bench&width=1280"
start_caddy 64MiB "$work/data"
curl -sf -o "$work/www/code.jpg" "$BASE/qr?path=pages/bench/bench"
curl -sf -o "$work/master.jpg" "$MASTER"
stop_caddy
SIZE=$(stat -c %s "$work/www/code.jpg")
MSIZE=$(stat -c %s "$work/master.jpg")
export BODY=$(head -c "$SIZE" /dev/zero | tr '\0' x)
export MASTER_BODY=$(head -c "$MSIZE" /dev/zero | tr '\0' x)
start_caddy 64MiB "$work/data"
curl -sf -o /dev/null "$BASE/qr?path=pages/bench/bench" # rendered into memory
curl -sf -o /dev/null "$MASTER"                         # into memory

rps() { wrk -t2 -c"$CONNS" -d"$DURATION" "$1" | awk '/^Requests\/sec/ {print $2}'; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "hits: $ROUNDS rounds of $DURATION each, $CONNS connections, a $SIZE-byte image at 430 px, the $MSIZE-byte master"
: >"$work/hit" ; : >"$work/file" ; : >"$work/respond"; : >"$work/mhit"; : >"$work/mrespond"
for r in $(seq "$ROUNDS"); do
	rps "$BASE/qr?path=pages/bench/bench" >>"$work/hit"
	rps "$BASE/static/code.jpg" >>"$work/file"
	rps "$BASE/respond" >>"$work/respond"
	rps "$MASTER" >>"$work/mhit"
	rps "$BASE/respond-master" >>"$work/mrespond"
done
HIT=$(median <"$work/hit"); FILE=$(median <"$work/file"); RESP=$(median <"$work/respond")
MHIT=$(median <"$work/mhit"); MRESP=$(median <"$work/mrespond")
printf '  wxqrcode hit, 430 (rendered) %10.0f req/s  (rounds: %s)\n' "$HIT" "$(paste -sd' ' "$work/hit")"
printf '  file_server, same image      %10.0f req/s  (rounds: %s)\n' "$FILE" "$(paste -sd' ' "$work/file")"
printf '  respond, same size           %10.0f req/s  (rounds: %s)\n' "$RESP" "$(paste -sd' ' "$work/respond")"
printf '  wxqrcode hit, 1280 (master)  %10.0f req/s  (rounds: %s)\n' "$MHIT" "$(paste -sd' ' "$work/mhit")"
printf '  respond, master size         %10.0f req/s  (rounds: %s)\n' "$MRESP" "$(paste -sd' ' "$work/mrespond")"
python3 -c "
print('  ratio rendered width/respond  %.2f (goal >= 0.90)' % ($HIT/$RESP))
print('  ratio rendered width/file     %.2f (goal >= 1.20)' % ($HIT/$FILE))
print('  ratio master/respond          %.2f (goal >= 0.90)' % ($MHIT/$MRESP))
print('  ratio rendered width/master   %.2f' % ($HIT/$MHIT))"

echo "misses: $MISSES new codes through Caddy against $MISSES direct calls to the fake"
TOKEN=$(curl -s -X POST -d "{\"grant_type\":\"client_credential\",\"appid\":\"$WX_APPID\",\"secret\":\"$WX_SECRET\",\"force_refresh\":false}" \
	"$WX_API_BASE/cgi-bin/stable_token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
: >"$work/direct"; : >"$work/miss"
for i in $(seq "$MISSES"); do
	curl -s -o /dev/null -w '%{time_total}\n' -X POST -d "{\"path\":\"pages/direct/$i\",\"width\":1280}" \
		"$WX_API_BASE/cgi-bin/wxaapp/createwxaqrcode?access_token=$TOKEN" >>"$work/direct"
	curl -s -o /dev/null -w '%{time_total}\n' "$BASE/qr?path=pages/miss/$i&width=1280" >>"$work/miss"
	curl -s -o /dev/null -w '%{time_total}\n' "$BASE/qr?path=pages/rmiss/$i" >>"$work/rmiss"
done
unset TOKEN
DIRECT=$(median <"$work/direct"); MISS=$(median <"$work/miss"); RMISS=$(median <"$work/rmiss")
python3 -c "print('  upstream alone %.2f ms, miss through Caddy %.2f ms: the module adds %.2f ms (goal < 2)' % ($DIRECT*1e3, $MISS*1e3, ($MISS-$DIRECT)*1e3))"
python3 -c "print('  a miss at 430 px, the master fetched and the width rendered: %.2f ms (+%.2f ms over the master width)' % ($RMISS*1e3, ($RMISS-$MISS)*1e3))"

echo "memory: $CODES distinct codes with memory_cache $MEMCACHE"
stop_caddy
start_caddy "$MEMCACHE" "$work/memdata"
rss() { awk '/^VmRSS/ {print $2}' "/proc/$CADDY_PID/status"; }
codes() { seq "$1" "$2" | xargs -P 16 -I{} curl -s -o /dev/null "$BASE/qr?path=pages/mem/{}&width=1280"; }
curl -sf -o /dev/null "$BASE/qr?path=pages/warm/warm&width=1280"
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

echo "memory: $WCODES codes in 5 widths each with memory_cache $MEMCACHE"
stop_caddy
start_caddy "$MEMCACHE" "$work/wdata"
curl -sf -o /dev/null "$BASE/qr?path=pages/warm/warm&width=430"
BEFORE=$(rss)
widths() { seq "$1" "$2" | xargs -P 16 -I{} sh -c 'for w in 280 430 640 860 1280; do curl -s -o /dev/null "$0/qr?path=pages/w/$1&width=$w"; done' "$BASE" {}; }
SECS=$(date +%s.%N)
widths 1 "$WCODES"
SECS=$(python3 -c "import time; print(time.time() - $SECS)")
AFTER=$(rss)
python3 -c "
print('  resident %.1f MiB before, %.1f MiB after %d codes x 5 widths (%d requests in %.1f s, the masters fetched and 4 widths of each rendered)' %
      ($BEFORE/1024, $AFTER/1024, $WCODES, 5*$WCODES, $SECS))"
