#!/usr/bin/env bash
# Run a command beside a temporary Prefect server on 127.0.0.1, so every flow process of a
# `dvc repro` connects to it instead of starting its own ephemeral API (about 20 s each).
# With PREFECT_API_URL already set, the command runs as it is; after `make serve` (the project
# profile names a server that answers) it runs against that server, so its runs show in its UI.
set -euo pipefail
if [ -n "${PREFECT_API_URL:-}" ]; then exec "$@"; fi
served=$(python -c 'from prefect.settings import get_current_settings as s; print(s().api.url or "")' 2>/dev/null || true)
if [ -n "$served" ] && python -c "import urllib.request; urllib.request.urlopen('$served/health', timeout=2)" 2>/dev/null; then
  PREFECT_API_URL="$served" exec "$@"
fi
# (a profile left behind by a server that is gone is overridden by the exported URL below)
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
