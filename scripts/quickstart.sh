#!/usr/bin/env bash
# The main job on an embedded default, no services needed: simulate a fleet of machine
# identities with injected attacks, replay it through the engine with the embedded model,
# show a few alerts and commands, and score the result against the fleet's labels.
#
# Usage: scripts/quickstart.sh [OUT_DIR] (default: ./quickstart-out)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-quickstart-out}"
cargo build --release --quiet
bin=target/release/driftwatch

"$bin" simulate --out "$out" --identities 200 --days 21 --seed 7
"$bin" replay --alerts "$out/alerts.jsonl" --commands "$out/commands.jsonl" --dead-letter "$out/dead-letter.jsonl" \
  "$out/cloudtrail.jsonl" "$out/k8s-audit.jsonl"

echo
echo "== first alerts (OCSF Detection Findings in $out/alerts.jsonl)"
python3 - "$out" <<'PY' 2>/dev/null || head -n 3 "$out/alerts.jsonl"
import json, sys
out = sys.argv[1]
shown = 0
for line in open(f"{out}/alerts.jsonl"):
    a = json.loads(line)
    if a["activity_id"] != 1:
        continue
    print(f'- risk {a["risk_score"]:3} {a["severity"]:8} {a["resources"][0]["uid"]}')
    for e in a["evidences"][1:]:
        print(f'    {e["data"]["detector"]}: {e["data"]["summary"]}')
    shown += 1
    if shown == 5:
        break
PY
echo
echo "== first revocation commands (dry run, $out/commands.jsonl)"
head -n 2 "$out/commands.jsonl"
echo
echo "== scored against $out/labels.json"
"$bin" evaluate --labels "$out/labels.json" --alerts "$out/alerts.jsonl"
