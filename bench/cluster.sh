#!/usr/bin/env bash
# Cluster benchmark, on loopback only: two Caddy instances on one
# file_system storage against the fake WeChat (every code call takes
# DELAY), both driven at once with distinct new codes (wrk, CONNS
# connections each, for DURATION). Runs it without caps, with a total cap
# too large to run out and with a window cap, and prints misses/s and p99
# latency per instance and the ratio capped/uncapped.
# Goals: ratio >= 0.85, p99 <= 2x DELAY, neither instance starved.
# Settings (environment): DURATION (10s), CONNS (40), DELAY (200ms).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNS=${CONNS:-40}
DELAY=${DELAY:-200ms}

source bench/common.sh

export WX_APPID=wxc1a5000000000000
export WX_SECRET=cluster-secret-0123456789abcdef
start_fake -delay "$DELAY"

# run_case <name> <options>: two instances on a new storage, loaded at once.
run_case() {
	local name=$1 options=$2 data="$work/data-$1" i
	local caddies=()
	for i in 0 1; do
		local port
		port=$(free_port)
		cat >"$work/Caddyfile-$name-$i" <<EOC
{
	admin off
	persist_config off
	storage file_system $data
}
http://127.0.0.1:$port {
	bind 127.0.0.1
	respond /up 200
	wxqrcode /qr {
		appid {env.WX_APPID}
		secret {env.WX_SECRET}
		api_base {env.WX_API_BASE}
		allow *
		$options
	}
}
EOC
		"$work/caddy" run --config "$work/Caddyfile-$name-$i" >"$work/caddy-$name-$i.log" 2>&1 &
		caddies+=($!)
		pids+=($!)
		for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$port/up" && break; sleep 0.05; done
		eval "port$i=$port"
	done
	# One code each first, so both have a token before the clock starts.
	curl -s -o /dev/null "http://127.0.0.1:$port0/qr?path=pages/warm/0"
	curl -s -o /dev/null "http://127.0.0.1:$port1/qr?path=pages/warm/1"
	wrk -t2 -c"$CONNS" -d"$DURATION" --latency -s bench/cluster.lua "http://127.0.0.1:$port0" -- "$name-a" >"$work/wrk-$name-0" &
	local w0=$!
	wrk -t2 -c"$CONNS" -d"$DURATION" --latency -s bench/cluster.lua "http://127.0.0.1:$port1" -- "$name-b" >"$work/wrk-$name-1" &
	local w1=$!
	wait "$w0" "$w1"
	for i in 0 1; do
		local out="$work/wrk-$name-$i" rps p99 bad
		rps=$(awk '/^Requests\/sec/ {print $2}' "$out")
		p99=$(awk '$1 == "99%" {print $2}' "$out")
		bad=$(awk '/Non-2xx/ {print $NF}' "$out")
		printf '  %-8s instance %d: %8.1f misses/s  p99 %8s  non-2xx %s\n' "$name" "$i" "$rps" "$p99" "${bad:-0}"
		echo "$rps" >>"$work/rps-$name"
	done
	for p in "${caddies[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
}

echo "cluster: two instances, one storage, fake WeChat taking $DELAY a call; $CONNS connections per instance for $DURATION"
run_case uncapped ""
run_case total "cap 100000000"
run_case window "cap 100000000 per 1h"
total() { python3 -c "import sys; print(sum(float(l) for l in open(sys.argv[1])))" "$work/rps-$1"; }
U=$(total uncapped); T=$(total total); W=$(total window)
python3 -c "
u, t, w = $U, $T, $W
print('  both instances: uncapped %.1f, total cap %.1f, window cap %.1f misses/s' % (u, t, w))
print('  ratio total/uncapped %.2f, window/uncapped %.2f (goal >= 0.85)' % (t/u, w/u))"
