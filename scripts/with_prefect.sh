#!/usr/bin/env bash
# Run a command beside a temporary Prefect server on 127.0.0.1, so every flow process of a
# `dvc repro` connects to it instead of starting its own ephemeral API (about 20 s each).
# With PREFECT_API_URL already set, the command runs as it is.
set -euo pipefail
if [ -n "${PREFECT_API_URL:-}" ]; then exec "$@"; fi
port=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log="${PREFECT_HOME:-.prefect}/server-$port.log"
mkdir -p "$(dirname "$log")"
prefect server start --host 127.0.0.1 --port "$port" >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true' EXIT
url="http://127.0.0.1:$port/api"
for _ in $(seq 1 180); do
  if python -c "import urllib.request, sys; urllib.request.urlopen('$url/health', timeout=2)" 2>/dev/null; then
    break
  fi
  kill -0 "$pid" 2>/dev/null || { echo "prefect server failed to start; see $log" >&2; exit 1; }
  sleep 1
done
export PREFECT_API_URL="$url"
"$@"
