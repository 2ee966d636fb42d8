#!/usr/bin/env bash
# Runs the second edition's queue (results/cifar10_cpu/queue.txt: "variant seed [overrides]"
# lines) one run at a time, each as its own launch.py call into WORKDIR, and skips every run
# whose WORKDIR/<variant>/seed_<k>/eval/results.json exists, so it resumes after a stop (an
# unfinished run resumes from its checkpoint). The queue is read again after every run.
# A variant written depth_cnnX/<variant> is the Fig. 3 depth ablation's: it runs with
# configs/cifar10_cpu.py:cnnX into WORKDIR/depth_cnnX (as the first edition's did).
#
#   bash results/cifar10_cpu/sync.sh seed WORKDIR                 # on a fresh machine first
#   bash results/cifar10_cpu/run.sh WORKDIR [CODE]                # from the repository root
#   bash results/cifar10_cpu/sync.sh collect WORKDIR              # after runs finish; commit
#
# CODE: a checkout to run (default: this one), e.g. a `git worktree` pinned to a commit, so
# that the runs do not change while this checkout does. Needs the README's virtual environment
# and ../shared/data.
set -uo pipefail
cd "$(dirname "$0")/../.."
HERE=results/cifar10_cpu
WD=${1:?workdir}
CODE=$(cd "${2:-.}" && pwd)
mkdir -p "$WD"
while true; do
  line=$(grep -v '^\s*\(#\|$\)' "$HERE/queue.txt" | while read -r v s rest; do
    [[ -f "$WD/$v/seed_$s/eval/results.json" ]] || { echo "$v $s $rest"; break; }; done)
  [[ -z "$line" ]] && break
  read -r v s rest <<< "$line"
  wd=$WD; arg=""
  if [[ $v == */* ]]; then   # depth_cnnX/variant
    sub=${v%%/*}; v=${v#*/}; wd=$WD/$sub; arg=":${sub#depth_}"
  fi
  mkdir -p "$wd"
  echo "== $(date -u +%H:%M:%S) $v seed $s in ${wd#"$WD"}/ at $(git -C "$CODE" rev-parse --short HEAD) $rest"
  # shellcheck disable=SC2086
  python -u "$CODE/launch.py" --config="$CODE/configs/cifar10_cpu.py$arg" --workdir="$wd" \
    --config.progress=False --config.seeds="($s,)" --config.compare_methods="('$v',)" \
    --config.policy.source="$PWD/$HERE/search_v2/default" $rest > "$wd/${v}_seed$s.log" 2>&1
  [[ -f "$wd/$v/seed_$s/eval/results.json" ]] || { echo "no results for $v seed $s; see $wd/${v}_seed$s.log"; exit 1; }
done
echo "queue done"
