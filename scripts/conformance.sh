#!/usr/bin/env bash
# Runs the official MCP conformance suite's server scenarios against `mcp-tasks serve --http`.
#
#   scripts/conformance.sh [VERSION] [conformance server options...]
#
# VERSION is a release of the npm package @modelcontextprotocol/conformance (default 0.1.16).
# Options go to `conformance server`, e.g. `--scenario logging-set-level`, or for a 2026 release
# `--requirements 2026-07-28` (the 2026-07-28 scenarios; without it the default suite runs).
#
# Needs Node 22 or newer on PATH (the suite's own requirement; CI does not run this script) and
# this project installed (.venv/bin/python is used when present). The suite is installed once per
# version under $MCP_TASKS_CONFORMANCE_DIR (default ~/.cache/mcp-tasks-conformance). The server
# serves a fresh SQLite file on a free loopback port, without tokens, and is stopped afterwards;
# the suite's results (checks.json per scenario) are kept in a temporary folder it names.
set -euo pipefail

version="${1:-0.1.16}"
shift || true
root="$(cd "$(dirname "$0")/.." && pwd)"
python="$root/.venv/bin/python"
[ -x "$python" ] || python="$(command -v python3)"

node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 22 ? 0 : 1)' 2>/dev/null || {
  echo "the conformance suite needs Node 22 or newer on PATH (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 2
}

suite="${MCP_TASKS_CONFORMANCE_DIR:-$HOME/.cache/mcp-tasks-conformance}/$version"
if [ ! -x "$suite/node_modules/.bin/conformance" ]; then
  npm install --silent --no-audit --no-fund --prefix "$suite" "@modelcontextprotocol/conformance@$version"
fi

work="$(mktemp -d)"
port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$python" -m mcp_tasks serve --http --host 127.0.0.1 --port "$port" --db "$work/conformance.db" \
  >"$work/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT

for _ in $(seq 100); do
  "$python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/healthz', timeout=1)" \
    2>/dev/null && break
  kill -0 "$server" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.1
done

echo "conformance $version against http://127.0.0.1:$port/mcp (results and server log in $work)"
"$suite/node_modules/.bin/conformance" server --url "http://127.0.0.1:$port/mcp" -o "$work/results" "$@"
