#!/usr/bin/env bash
# Stranger soak, not run in CI: a well-behaved client asks for its 50 hot
# codes at RATE a second (an open loop, bench/pace) for DURATION, first
# alone, then while a stranger (wrk, CONNS connections) hammers random
# widths of those codes and random new scenes. Prints the client's p50 and
# p99 in both runs and their ratio, Caddy's CPU and peak resident memory
# while the stranger runs, and the codes stored against max_stored.
# Goals: p99 with the stranger at most 3x alone; stored <= max_stored;
# peak RSS <= memory_cache + 100 MiB. MAX_STORED=off leaves the option
# out, for a build that does not know it.
# The fake WeChat and the stranger's wrk stand for machines elsewhere:
# they run at nice 10, so that the measure is Caddy's, not theirs.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-20}
RATE=${RATE:-200}
CONNS=${CONNS:-16}
MAX_STORED=${MAX_STORED:-200}
MEMORY_MIB=${MEMORY_MIB:-64}

source bench/common.sh
go build -o "$work/pace" ./bench/pace

export WX_APPID=wx5a4e000000000000
export WX_SECRET=stranger-secret-0123456789abcdef
nice -n 10 "$work/fakewechat" -appid "$WX_APPID" -secret "$WX_SECRET" >"$work/fake.url" 2>"$work/fake.log" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/fake.url" ] && break; sleep 0.05; done
export WX_API_BASE=$(cat "$work/fake.url")

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
	wxqrcode /u/* {
		appid {env.WX_APPID}
		secret {env.WX_SECRET}
		api_base {env.WX_API_BASE}
		api unlimited
		scene {path.1}
		page pages/item/item
		cap 600 per 1m
		$([ "$MAX_STORED" = off ] || echo "max_stored $MAX_STORED")
		memory_cache ${MEMORY_MIB}MiB
		cache_dir $work/codes
	}
}
EOC
${GOMEMLIMIT:+env GOMEMLIMIT=$GOMEMLIMIT} "$work/caddy" run --config "$work/Caddyfile" >"$work/caddy.log" 2>&1 &
caddy_pid=$!
pids+=($caddy_pid)
for _ in $(seq 200); do curl -s -o /dev/null "$BASE/u/hot1?width=430" && break; sleep 0.05; done

for i in $(seq 50); do echo "$BASE/u/hot$i?width=430"; done >"$work/hot.txt"
# Warm: every hot code fetched and its width drawn.
while read -r u; do curl -s -o /dev/null "$u"; done <"$work/hot.txt"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$caddy_pid/stat"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$caddy_pid/status"; }

echo "client alone: $RATE/s for ${DURATION}s"
alone=$("$work/pace" -rate "$RATE" -d "${DURATION}s" <"$work/hot.txt")
echo "  $alone"

echo "client with a stranger: $CONNS connections of random widths and new scenes"
nice -n 10 wrk -t1 -c"$CONNS" -d"$((DURATION + 2))s" -s bench/stranger.lua "$BASE" >"$work/wrk.out" 2>&1 &
wrk_pid=$!
peak=0
( while kill -0 "$wrk_pid" 2>/dev/null; do r=$(rss_kib); [ "$r" -gt "$peak" ] && peak=$r; echo "$peak" >"$work/peak"; sleep 0.5; done ) &
sampler=$!
t0=$(cpu_ticks); s0=$(date +%s.%N)
sleep 1
with=$("$work/pace" -rate "$RATE" -d "${DURATION}s" <"$work/hot.txt")
t1=$(cpu_ticks); s1=$(date +%s.%N)
heap=$(curl -s "$BASE/metrics" | awk '$1 == "go_memstats_heap_inuse_bytes" {printf "%.1f", $2 / 1048576}')
wait "$wrk_pid" || true
wait "$sampler" || true
echo "  $with"
grep -E "requests in|Requests/sec|Non-2xx" "$work/wrk.out" | sed 's/^/  stranger: /'
echo "  heap in use as the client ended: $heap MiB"

stored=$(find "$work/codes" -type f -regextype posix-extended -regex '.*/[0-9a-f]{64}' | wc -l)
python3 - "$alone" "$with" "$t0" "$t1" "$s0" "$s1" "$(cat "$work/peak")" "$stored" "$MAX_STORED" "$MEMORY_MIB" "$(getconf CLK_TCK)" <<'PY'
import re, sys
alone, with_, t0, t1, s0, s1, peak, stored, max_stored, mem, hz = sys.argv[1:]
p = lambda s, k: float(re.search(k + r' ([0-9.]+)ms', s).group(1))
a50, a99, w50, w99 = p(alone, 'p50'), p(alone, 'p99'), p(with_, 'p50'), p(with_, 'p99')
cpu = (int(t1) - int(t0)) / int(hz) / (float(s1) - float(s0)) * 100
rss = int(peak) / 1024
print(f"client p50 {a50:.2f} ms alone, {w50:.2f} ms with the stranger")
print(f"client p99 {a99:.2f} ms alone, {w99:.2f} ms with the stranger: ratio {w99 / a99:.2f} (goal <= 3)")
print(f"caddy CPU {cpu:.0f}% of one core while the stranger ran; peak RSS {rss:.1f} MiB (goal <= {int(mem) + 100})")
print(f"codes stored {stored} (max_stored {max_stored})")
PY
if grep -q 'panic while making a code' "$work/caddy.log"; then echo "PANIC in the Caddy log"; exit 1; fi
