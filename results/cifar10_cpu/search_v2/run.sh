#!/usr/bin/env bash
# Runs the stage-1 searches listed in results/cifar10_cpu/search_v2/queue.txt one after
# another, on the real CIFAR-10 archive (configs/cifar10_search.py:cpu: the critic at width
# 0.5), and copies each finished search's small files here (search_log.json, policy files,
# grid PNG) with the commit and command it ran with. queue.txt is read again after every
# search, and an entry whose folder here already holds policy_params.json is skipped, so the
# queue can be edited while it runs and restarted after a stop. One search at a time (they
# share the 2 cores).
#
#   bash results/cifar10_cpu/search_v2/run.sh [WORKROOT] [CODE]   # from the repository root
#
# CODE: a checkout to run (default: this one), e.g. a `git worktree` pinned to one commit, so
# that a search runs the same code while this checkout changes.
# Needs the virtual environment of the README (. .venv/bin/activate) and ../shared/data.
set -euo pipefail
cd "$(dirname "$0")/../../.."
HERE=results/cifar10_cpu/search_v2
ROOT=${1:-/tmp/eriep_search_v2}
CODE=$(cd "${2:-.}" && pwd)
CONFIG=cpu
mkdir -p "$ROOT"
while pgrep -f "launch.py --config=.*cifar10_search" > /dev/null; do sleep 20; done
next() {   # the first unfinished "name | overrides" line of queue.txt
  grep -v '^\s*\(#\|$\)' "$HERE/queue.txt" | while IFS= read -r line; do
    name=$(echo "${line%%|*}" | xargs)
    [[ -f "$HERE/$name/policy_params.json" ]] || { echo "$line"; break; }
  done
}
while entry=$(next) && [[ -n "$entry" ]]; do
  name=$(echo "${entry%%|*}" | xargs)
  args=$(echo "${entry#*|}" | xargs)
  echo "== $name: $args"
  wd="$ROOT/$name"
  rm -rf "$wd"
  commit=$(git -C "$CODE" rev-parse HEAD)
  # shellcheck disable=SC2086
  python -u "$CODE/launch.py" --config="$CODE/configs/cifar10_search.py:$CONFIG" --workdir="$wd" \
    --mode=search $args 2>&1 | grep --line-buffered -v "^[IW][0-9]\{4\} " \
    | tee "$ROOT/${name//\//_}.log"
  mkdir -p "$HERE/$name"
  for f in search_log.json policy_params.json policy_init.json policy.json policy_summary.txt \
      policy_grid.png; do
    [[ -f "$wd/$f" ]] && cp "$wd/$f" "$HERE/$name/"
  done
  printf 'commit %s\npython launch.py --config=configs/cifar10_search.py:%s --mode=search %s\n' \
    "$commit" "$CONFIG" "$args" > "$HERE/$name/command.txt"
done
