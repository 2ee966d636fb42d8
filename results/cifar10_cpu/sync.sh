#!/usr/bin/env bash
# Moves the second-edition CPU study's small result files between a live workdir and this folder.
#
#   bash results/cifar10_cpu/sync.sh collect WD   # WD -> here: every finished run's results.json,
#                                                 # the searched and random policies, then the report
#   bash results/cifar10_cpu/sync.sh seed WD      # here -> WD, on a fresh machine: finished runs are
#                                                 # then skipped and the search is reused, not redone
# Also copies gradcam/ (the Fig. 4 panel and CAM scores). Never copies checkpoints,
# TensorBoard files or data. STUDY and CONFIG (environment) name another study's folder and
# report config; results/cifar10_cpu_v1/sync.sh is this script with the first edition's.
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=${STUDY:-results/cifar10_cpu}
CONFIG=${CONFIG:-configs/cifar10_cpu.py}
mode=${1:?collect or seed}; WD=${2:?workdir}
POLICY_FILES="policy_params.json policy.json policy_summary.txt policy_grid.png search_log.json"
copy_tree() {  # copy_tree FROM TO: results.json files and policy folders
  local from=$1 to=$2
  (cd "$from" && find . -path ./report -prune -o -path '*/eval/results.json' -print) | while read -r f; do
    mkdir -p "$to/$(dirname "$f")"; cp "$from/$f" "$to/$f"
  done
  # what each eriep variant's EPM became in stage 2, seed 0 only (a grid PNG per variant)
  (cd "$from" && find . -path ./report -prune -o -path '*/seed_0/final_policy_grid.png' -print) | while read -r f; do
    mkdir -p "$to/$(dirname "$f")"; cp "$from/$f" "$to/$f"
  done
  (cd "$from" && find . -path ./report -prune -o -name initial_policy.json -print) | while read -r f; do
    mkdir -p "$to/$(dirname "$f")"; cp "$from/$f" "$to/$f"
  done
  if [ -d "$from/gradcam" ]; then   # the Fig. 4 panel and the CAM scores (--mode=gradcam)
    mkdir -p "$to/gradcam"; cp "$from"/gradcam/*.png "$from"/gradcam/*.json "$to/gradcam/"
  fi
  for d in search random_policy $(cd "$from" && ls -d depth_*/search depth_*/random_policy 2>/dev/null || true); do
    [ -d "$from/$d" ] || continue
    mkdir -p "$to/$d"
    for f in $POLICY_FILES; do
      if [ -f "$from/$d/$f" ]; then cp "$from/$d/$f" "$to/$d/$f"; fi
    done
  done
}
case $mode in
  collect)
    copy_tree "$WD" "$HERE"
    python launch.py --config="$CONFIG" --workdir="$HERE" --mode=report > /dev/null
    echo "collected into $HERE; report in $HERE/report/report.md" ;;
  seed)
    mkdir -p "$WD"; copy_tree "$HERE" "$WD"
    echo "seeded $WD from $HERE" ;;
  *) echo "unknown mode $mode; use collect or seed" >&2; exit 2 ;;
esac
