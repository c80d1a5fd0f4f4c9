#!/usr/bin/env bash
# Device check of `rhx run --gpus` on a real GPU: plain run vs --gpus 1 vs --gpus all on
# tests/run/tiny.rhx with the model on CUDA; same artifacts, each node once; a bad --gpus.
set -uo pipefail
source scripts/device/setup.sh
R=$PWD/out/rx/rhx
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
E=tests/run/tiny.rhx
S="--set smol.device=cuda"
for v in single:"" gpus1:"--gpus 1" gpusall:"--gpus all"; do
  n=${v%%:*}; a=${v#*:}
  /usr/bin/time -f "$n wall %e s" $R run $E $S $a --cache /tmp/c_$n --reports /tmp/r_$n --json --quiet > $OUT/$n.json 2> $OUT/$n.err; echo "$n rc=$?"; tail -1 $OUT/$n.err
  $R plan $E $S --cache /tmp/c_$n --json > $OUT/plan_$n.json
done
CUDA_VISIBLE_DEVICES=0 $R run $E $S --gpus 0, --cache /tmp/c_vis --reports /tmp/r_vis --json --quiet > $OUT/vis.json 2> $OUT/vis.err; echo "inherited CUDA_VISIBLE_DEVICES=0, --gpus 0,: rc=$?"
$R run $E $S --gpus 2 --cache /tmp/c_bad --quiet 2>&1 | tail -2; echo "--gpus 2 rc=${PIPESTATUS[0]}"
/opt/torch/.venv/bin/python - <<'PY'
import json, os, glob
out = os.environ["OUT"]
def files(n):
    plan = json.load(open(f"{out}/plan_{n}.json"))
    r = {}
    for s in plan:
        if s["kind"] == "report": continue
        k = s["key"]; m = json.load(open(f"/tmp/c_{n}/objects/{k[:2]}/{k}/manifest.json"))
        r[s["node"]] = (k, m["files"])
    return r
ref = files("single")
for n in ["gpus1", "gpusall"]:
    got = files(n)
    print(n, "same keys and files as single:", got == ref)
    v = json.load(open(f"{out}/{n}.json"))
    counts = {}
    for s in [v] + [w["summary"] for w in v["workers"]]:
        for x in s["nodes"]:
            if x["outcome"] == "computed": counts[x["node"]] = counts.get(x["node"], 0) + 1
    print(n, "workers:", [w["worker"] for w in v["workers"]], "computed counts:", sorted(set(counts.values())), "nodes:", len(counts))
print("trace device:", [json.load(open(p)).get("device") for p in glob.glob("/tmp/c_gpus1/objects/*/*/trace_info.json")][:2])
PY
