#!/usr/bin/env bash
# Soak test, not run in CI: drives Caddy with the module for DURATION
# (default 3m) with mixed hits and misses while the fake WeChat injects a
# random fault every CHAOS (default 20ms), then reports requests served,
# answers by outcome and status, upstream calls by errcode, and goroutines
# and resident memory at the start and the end.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-3m}
CHAOS=${CHAOS:-20ms}
CONNS=${CONNS:-20}

source bench/common.sh

export WX_APPID=wx5oa4000000000000
export WX_SECRET=soak-secret-0123456789abcdef
start_fake -chaos "$CHAOS"

PORT=$(free_port)
BASE="http://127.0.0.1:$PORT"
cat >"$work/Caddyfile" <<EOC
{
	admin off
	persist_config off
	storage file_system $work/data
}
http://127.0.0.1:$PORT {
	bind 127.0.0.1
	metrics /metrics
	wxqrcode /qr {
		appid {env.WX_APPID}
		secret {env.WX_SECRET}
		api_base {env.WX_API_BASE}
		# Requests choose the path: the load must bound the total.
		allow *
		cap 100000000
		timeout 2s
		memory_cache 16MiB
	}
}
EOC
"$work/caddy" run --config "$work/Caddyfile" >"$work/caddy.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do curl -s -o /dev/null "$BASE/metrics" && break; sleep 0.05; done

sample() { curl -s "$BASE/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
G0=$(sample go_goroutines); R0=$(sample process_resident_memory_bytes)

echo "soak: $DURATION, $CONNS connections, a fault every $CHAOS"
wrk -t2 -c"$CONNS" -d"$DURATION" -s bench/soak.lua "$BASE" | tee "$work/wrk.out" | grep -E "requests in|Requests/sec|Non-2xx|Socket errors" || true
# The file_system storage's lock keepers stop within 5 s of an unlock:
# wait them out, so that what remains is what would leak.
sleep 12
G1=$(sample go_goroutines); R1=$(sample process_resident_memory_bytes)

echo "answers by outcome and status:"
curl -s "$BASE/metrics" | grep '^caddy_wxqrcode_requests_total' | sed 's/caddy_wxqrcode_requests_total/  /'
echo "upstream calls by errcode:"
curl -s "$BASE/metrics" | grep '^caddy_wxqrcode_upstream_calls_total' | sed 's/caddy_wxqrcode_upstream_calls_total/  /'
python3 -c "print('goroutines %d at the start, %d at the end; resident memory %.1f MiB at the start, %.1f MiB at the end' % ($G0, $G1, $R0/2**20, $R1/2**20))"
if grep -q '"level":"error".*panic' "$work/caddy.log"; then echo "PANIC in the Caddy log"; exit 1; fi
