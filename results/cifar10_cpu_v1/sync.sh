#!/usr/bin/env bash
# Moves the first-edition CPU study's small result files between a live workdir and this folder:
# results/cifar10_cpu/sync.sh with this folder and the ':v1' report config.
#
#   bash results/cifar10_cpu_v1/sync.sh collect WD   # WD -> here, then the report
#   bash results/cifar10_cpu_v1/sync.sh seed WD      # here -> WD, on a fresh machine
set -euo pipefail
cd "$(dirname "$0")/../.."
STUDY=results/cifar10_cpu_v1 CONFIG=configs/cifar10_cpu.py:v1 exec bash results/cifar10_cpu/sync.sh "$@"
