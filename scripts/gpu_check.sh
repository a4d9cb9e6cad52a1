#!/usr/bin/env bash
# Label the demo hub on a CUDA GPU (mixed precision, label.gpu_batch_size) into a scratch folder and
# print images/s per model. Needs the demo built first (`make demo`: data/splits, data/sdag, models).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" HF_HUB_OFFLINE=1 DO_NOT_TRACK=true MLFLOW_DISABLE_TELEMETRY=true
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)" || {
  echo "gpu_check: no CUDA device visible to torch; nothing to check (labeling falls back to CPU with device: auto)" >&2
  exit 3
}
python -c "import torch; print('device:', torch.cuda.get_device_name(0), '| torch', torch.__version__)"
out=$(mktemp -d)
mll label --force --device cuda --no-track --labels "$out/labels" --summary "$out/summary.json"
python - "$out/summary.run.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for name, m in r["per_model"].items():
    print(f"{name:18s} {m['images']:5d} images  forward {m['forward_seconds']:7.2f} s  "
          f"{m['images'] / max(m['forward_seconds'], 1e-9):8.0f} img/s  wall {m['seconds']:6.2f} s")
print(f"hub: wall {r['label_seconds']} s, forward {r['forward_seconds']} s, ratio {r['overhead_ratio']}")
PY
rm -rf "$out"
