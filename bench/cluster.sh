#!/usr/bin/env bash
# Cluster benchmark, on loopback only: two Caddy instances on one
# file_system storage against the fake WeChat (every code call takes
# DELAY), both driven at once with distinct new codes of api unlimited
# (signed URLs, a new scene each, read by bench/cluster.lua; CONNS
# connections per instance, for DURATION). Every case carries sign_key, as
# the guard rule wants when requests choose the scene, so the cases differ
# only in their caps: none, a total cap too large to run out, a window cap.
# Runs them ROUNDS times interleaved (a shared machine is noisy), and
# prints misses/s and p99 latency per instance, and the ratios
# capped/uncapped of each round and their median.
# Goals: ratio >= 0.85, p99 <= 2x DELAY, neither instance starved.
# Settings (environment): DURATION (10s), CONNS (40), DELAY (200ms),
# ROUNDS (3), URLS (8000 signed URLs per instance and case).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNS=${CONNS:-40}
DELAY=${DELAY:-200ms}
ROUNDS=${ROUNDS:-3}
URLS=${URLS:-8000}

source bench/common.sh

export WX_APPID=wxc1a5000000000000
export WX_SECRET=cluster-secret-0123456789abcdef
export WXQRCODE_SIGN_KEY=cluster-sign-key-0123456789abcdef
start_fake -delay "$DELAY"

# signed_urls <prefix> <n>: n signed URLs of new scenes, signed as the README's
# "Signed URLs" says (the default templates of api unlimited).
signed_urls() {
	python3 - "$1" "$2" <<'EOP'
import hashlib, hmac, os, sys, urllib.parse
prefix, n = sys.argv[1], int(sys.argv[2])
key = os.environ["WXQRCODE_SIGN_KEY"].encode()
for i in range(n):
    scene = f"{prefix}-{i}"[-32:]
    params = {"api": "unlimited", "appid": os.environ["WX_APPID"], "auto_color": "false",
              "check_path": "true", "env_version": "release", "is_hyaline": "false",
              "line_color": "0,0,0", "page": "", "scene": scene}
    sig = hmac.new(key, urllib.parse.urlencode(sorted(params.items())).encode(), hashlib.sha256).hexdigest()
    # At the master's width, so that no miss also renders a width.
    print("/qr?" + urllib.parse.urlencode({"scene": scene, "width": 1280, "sig": sig}))
EOP
}

# run_case <name> <round> <options>: two instances on a new storage, loaded
# at once; writes the misses/s of both to $work/rps-<name>-<round>.
run_case() {
	local name=$1 round=$2 options=$3 data="$work/data-$1-$2" i port
	local caddies=() ports=()
	for i in 0 1; do
		port=$(free_port)
		ports+=("$port")
		cat >"$work/Caddyfile-$name-$round-$i" <<EOC
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
		api unlimited
		sign_key {env.WXQRCODE_SIGN_KEY}
		$options
	}
}
EOC
		"$work/caddy" run --config "$work/Caddyfile-$name-$round-$i" >"$work/caddy-$name-$round-$i.log" 2>&1 &
		caddies+=($!)
		pids+=($!)
		for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$port/up" && break; sleep 0.05; done
		signed_urls "$name-$round-$i" "$URLS" >"$work/urls-$name-$round-$i"
		# One code first, so the instance has its token before the clock starts.
		curl -s -o /dev/null "http://127.0.0.1:$port$(signed_urls "warm-$name-$round-$i" 1)"
	done
	local waits=()
	for i in 0 1; do
		wrk -t2 -c"$CONNS" -d"$DURATION" --latency -s bench/cluster.lua "http://127.0.0.1:${ports[$i]}" -- "$work/urls-$name-$round-$i" 2 >"$work/wrk-$name-$round-$i" &
		waits+=($!)
	done
	wait "${waits[@]}"
	: >"$work/rps-$name-$round"
	for i in 0 1; do
		local out="$work/wrk-$name-$round-$i" rps p99 bad
		rps=$(awk '/^Requests\/sec/ {print $2}' "$out")
		p99=$(awk '$1 == "99%" {print $2}' "$out")
		bad=$(awk '/Non-2xx/ {print $NF}' "$out")
		printf '  round %d %-8s instance %d: %7.1f misses/s  p99 %9s  non-2xx %s\n' "$round" "$name" "$i" "$rps" "$p99" "${bad:-0}"
		echo "$rps" >>"$work/rps-$name-$round"
	done
	for p in "${caddies[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
}

echo "cluster: two instances, one storage, fake WeChat taking $DELAY a call; $CONNS connections per instance for $DURATION; $ROUNDS rounds"
for round in $(seq "$ROUNDS"); do
	run_case uncapped "$round" ""
	run_case total "$round" "cap 100000000"
	run_case window "$round" "cap 100000000 per 1h"
done
python3 - "$work" "$ROUNDS" <<'EOP'
import statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
def both(name, r):
    return sum(float(l) for l in open(f"{work}/rps-{name}-{r}"))
ts, ws = [], []
for r in range(1, rounds + 1):
    u, t, w = both("uncapped", r), both("total", r), both("window", r)
    ts.append(t / u)
    ws.append(w / u)
    print(f"  round {r}: both instances uncapped {u:.1f}, total cap {t:.1f}, window cap {w:.1f} misses/s; "
          f"total/uncapped {t/u:.2f}, window/uncapped {w/u:.2f}")
print(f"  median ratio total/uncapped {statistics.median(ts):.2f}, window/uncapped {statistics.median(ws):.2f} (goal >= 0.85)")
EOP
