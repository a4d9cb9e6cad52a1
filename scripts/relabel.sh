#!/usr/bin/env bash
# Relabel the hub: the same steps in CI (.github/workflows/relabel.yml) and on a laptop.
#   1. make setup (Debian packages, .venv), make clipart (emoji artwork, npm)
#   2. dvc pull from MLL_DVC_REMOTE, if set
#   3. dvc repro label (data -> experts -> sdag -> label, through the label-hub Prefect flow, on the
#      served Prefect when `make serve` runs, else on a temporary server; DVC records the outputs;
#      only models whose card or probe data changed are labeled)
#   4. great_expectations check of every stored label (mll label --check)
#   5. dvc push to MLL_DVC_REMOTE, if set
# Exits non-zero, loudly, if any step or any model fails.
set -euo pipefail
cd "$(dirname "$0")/.."
make setup
make clipart  # the data stage reads the emoji artwork; skipped when already fetched
export PATH="$PWD/.venv/bin:$PATH" DO_NOT_TRACK=true MLFLOW_DISABLE_TELEMETRY=true DVC_NO_ANALYTICS=1 \
  HF_HUB_OFFLINE=1 PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=90 \
  PREFECT_HOME="$PWD/.prefect" MLFLOW_TRACKING_URI="${MLFLOW_TRACKING_URI:-sqlite:///$PWD/mlflow.db}"
if [ -n "${MLL_DVC_REMOTE:-}" ]; then
  dvc remote modify --local demo url "$MLL_DVC_REMOTE"
  dvc pull --allow-missing || echo "relabel: nothing (or not everything) to pull yet; stages will rebuild it"
fi
bash scripts/with_prefect.sh dvc repro label  # a served Prefect if one answers, else a temporary one
mll label --check
python - <<'PY'
import json, sys
r = json.load(open("reports/labels_summary.run.json"))  # this run (labels_summary.json holds the labels)
print(f"relabel: {r['labeled']} labeled, {r['skipped']} up to date, {len(r['pruned'])} pruned")
sys.exit(0 if r["labeled"] + r["skipped"] == r["models"] else 1)
PY
if [ -n "${MLL_DVC_REMOTE:-}" ]; then
  dvc push
fi
