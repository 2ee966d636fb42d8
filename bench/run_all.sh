#!/usr/bin/env bash
# Runs every benchmark once and writes each one's output to $1 (default: bench_out/).
# Usage: bash bench/run_all.sh [OUTDIR] [LABEL]
# The figures in docs/performance.md were produced with this script.
set -u
out=${1:-bench_out}
label=${2:-$(hostname)}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
run() {  # name, timeout seconds, command...
  local name=$1 limit=$2; shift 2
  echo "=== $name: $*" | tee "$out/$name.txt"
  timeout "$limit" "$@" 2>&1 | grep -v -E "^(I0000|WARNING: All log|W0000)" | tee -a "$out/$name.txt"
}
python3 -c "import jax; print('jax', jax.__version__, jax.devices())" | tee "$out/devices.txt"
run ops 150 python3 -m bench.ops --batch 256 --repeats 10 --label "$label"
run policy 150 python3 -m bench.policy --batch 128 --repeats 10 --label "$label"
run train 150 python3 -m bench.train --steps 20
run search 150 python3 -m bench.search --steps 10
run demo 300 python3 -m bench.demo
# All models by default (ResNet-50 and ConvNeXt-T at 224x224, batch 32); on a CPU pass e.g.
# MODELS_ARGS="--models cnn8,vgg16,resnet18 --repeats 3".
run models 300 python3 -m bench.models ${MODELS_ARGS:---repeats 10}
[ "${SKIP_DATA:-0}" = 1 ] || run data 200 python3 -m bench.data
