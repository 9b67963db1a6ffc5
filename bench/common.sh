# Sourced by run.sh and soak.sh: wrk and the other tools, a work directory
# and processes cleaned up on exit, Caddy and the fake WeChat built, and
# start_fake <flags> to run the fake and export WX_API_BASE.

if ! command -v wrk >/dev/null; then
	apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
for tool in curl python3; do
	command -v "$tool" >/dev/null || { echo "bench: $tool is needed" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

echo "building..."
go build -o "$work/caddy" ./cmd/caddy
go build -o "$work/fakewechat" ./bench/fakewechat

start_fake() {
	"$work/fakewechat" -appid "$WX_APPID" -secret "$WX_SECRET" "$@" >"$work/fake.url" 2>"$work/fake.log" &
	pids+=($!)
	for _ in $(seq 100); do [ -s "$work/fake.url" ] && break; sleep 0.05; done
	WX_API_BASE=$(cat "$work/fake.url")
	export WX_API_BASE
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
