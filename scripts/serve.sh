#!/usr/bin/env bash
# Local services for mll, bound to 127.0.0.1 only:
#   start: Prefect server (:4200) + work pool `mll-local` + process worker + deployments from prefect.yaml,
#          and the MLflow UI (:5000) on sqlite:///mlflow.db; records the server's address in the
#          project's Prefect profile (`mll-served` in .prefect/profiles.toml, which ./prefect.toml
#          points at), so a new shell in this folder runs `prefect deployment run
#          'label-hub/label-hub'` with no exports
#   stop:  stop them all (each runs in its own process group, so no child is left behind) and
#          remove that profile (Prefect then starts its temporary server again, as before serving)
# Ports: MLL_PREFECT_PORT (4200), MLL_MLFLOW_PORT (5000); MLL_SERVE_PROFILE=0 leaves the profile
# alone. To expose a service deliberately, set MLL_BIND_HOST (e.g. 0.0.0.0) and put it behind your
# own authentication; the default is loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN="${MLL_SERVE_DIR:-.serve}"
HOST="${MLL_BIND_HOST:-127.0.0.1}"
PPORT="${MLL_PREFECT_PORT:-4200}"
MPORT="${MLL_MLFLOW_PORT:-5000}"
export PREFECT_API_URL="http://127.0.0.1:$PPORT/api"
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false   # no orphan huey consumers
export MLFLOW_TRACKING_URI="${MLFLOW_TRACKING_URI:-sqlite:///$PWD/mlflow.db}"   # the worker's flows log here
mkdir -p "$RUN"

wait_http() {  # url, seconds, name
  for _ in $(seq 1 "$2"); do
    python -c "import urllib.request; urllib.request.urlopen('$1', timeout=2)" 2>/dev/null && return 0
    sleep 1
  done
  echo "serve: $3 did not answer at $1; see $RUN/*.log" >&2
  return 1
}

start_bg() {  # name, command...
  local name=$1; shift
  if [ -f "$RUN/$name.pid" ] && kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null; then
    echo "serve: $name already running (pid $(cat "$RUN/$name.pid"))"; return 0
  fi
  setsid "$@" >"$RUN/$name.log" 2>&1 < /dev/null &
  echo $! >"$RUN/$name.pid"
}

use_profile() {  # URL, or "" to remove: the project profile `mll-served` (active while served)
  # MLL_SERVE_PROFILE=0: leave the profile alone (a second, scratch server from this folder, e.g. a
  # test's, must not repoint or remove the one a user is serving)
  [ "${MLL_SERVE_PROFILE:-1}" = 1 ] || return 0
  python - "$1" <<'PY'
import sys

from prefect.settings import load_profiles, save_profiles  # writes ./prefect.toml's profiles_path

url, name = sys.argv[1], "mll-served"
profiles = load_profiles(include_defaults=False)
if url:
    profiles.update_profile(name, {"PREFECT_API_URL": url})
    profiles.set_active(name)
elif name in profiles.names:
    profiles.remove_profile(name)
    if profiles.active_name == name:
        profiles.set_active(None)
save_profiles(profiles)
PY
}

stop_all() {
  for name in worker mlflow prefect; do
    f="$RUN/$name.pid"
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -KILL -- "-$pid" 2>/dev/null || true
      echo "serve: stopped $name"
    fi
    rm -f "$f"
  done
  use_profile ""
}

case "${1:-start}" in
  start)
    start_bg prefect prefect server start --host "$HOST" --port "$PPORT"
    wait_http "$PREFECT_API_URL/health" 120 "Prefect server"
    use_profile "$PREFECT_API_URL"
    prefect work-pool inspect mll-local >/dev/null 2>&1 || prefect work-pool create mll-local --type process >/dev/null
    prefect --no-prompt deploy --all >"$RUN/deploy.log" 2>&1 || { cat "$RUN/deploy.log" >&2; exit 1; }
    start_bg worker prefect worker start --pool mll-local
    start_bg mlflow mlflow ui --backend-store-uri "$MLFLOW_TRACKING_URI" --host "$HOST" --port "$MPORT" --workers 1
    wait_http "http://127.0.0.1:$MPORT/health" 120 "MLflow UI"
    echo "Prefect UI  http://127.0.0.1:$PPORT   (deployments: label-hub/label-hub, build-sdag/build-sdag, evaluate/evaluate)"
    echo "MLflow UI   http://127.0.0.1:$MPORT"
    echo "relabel:    prefect deployment run 'label-hub/label-hub' --watch   (from this folder, any shell)"
    echo "stop:       make stop"
    ;;
  stop) stop_all ;;
  *) echo "usage: scripts/serve.sh start|stop" >&2; exit 2 ;;
esac
