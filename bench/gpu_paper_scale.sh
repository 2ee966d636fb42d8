#!/usr/bin/env bash
# Table 3's cnn8 protocol at the paper's scale on one accelerator, through launch.py itself,
# on a machine without TensorFlow (the project's GPU machine: JAX, flax, optax, orbax, chex,
# absl, Pillow, no TensorFlow/TFDS/ml_collections/clu/tqdm).
#
#   bash bench/gpu_paper_scale.sh ARCHIVE OUT [SEED] [EPOCHS] [--config.field=value ...]
#
# ARCHIVE: the CIFAR-10 JPEG archive (../shared/data/cifar10-jpeg.tar.gz here); OUT: the
# workdir. It trains standard and eriep (cnn8 at width 1, batch 128, Adam 1e-3, no train
# augmentation, 50 epochs, alpha 0.5, sync_freq 100, configs/cifar10_cnn8.py) for one seed
# from the committed stage-1 policy (results/cifar10_cpu/search_v2/default), evaluates both
# (clean, perturb-1/2/3, the noise sweep) and prints the report. Data: the in-memory pipeline
# (config.data.pipeline='memory'), decoded once with Pillow into OUT/data/.eriep_arrays.
# Writes OUT/<method>/seed_<k>/eval/results.{json,md} (what --mode=report reads) and
# OUT/report/. No plots (matplotlib is not on that machine) and no Grad-CAM score.
#
# Each results.json records the code's commit: on a copy whose git metadata is stale, pass it in
# as ERIEP_JAX_GIT_COMMIT=<commit> (the 2026-12-04 check recorded the copy's stale one).
# The pure-Python wheels that machine lacks travel with the repository (docs/performance.md):
#   pip download --no-deps ml_collections==1.1.0 clu==0.0.12 tqdm -d .whl
#   export PYTHONPATH=$(ls $PWD/.whl/*.whl | tr '\n' ':')
set -euo pipefail
cd "$(dirname "$0")/.."
ARCHIVE=$(realpath "${1:?the CIFAR-10 JPEG archive}")
OUT=${2:?a workdir}
SEED=${3:-0}
EPOCHS=${4:-50}
shift $(( $# < 4 ? $# : 4 ))
# LAUNCH: how to run launch.py (tests/launch_without_tensorflow.py tries it here with
# TensorFlow blocked).
read -r -a launch <<< "${LAUNCH:-python launch.py}"
# METHODS: the variants to train, space-separated (one launch.py call each, so each one's
# results.json is written as soon as it is evaluated).
read -r -a methods <<< "${METHODS:-standard eriep}"
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
args=(--config=configs/cifar10_cnn8.py:folder --workdir="$OUT"
      --config.data.archive="$ARCHIVE" --config.data.root="$OUT/data"
      --config.data.pipeline=memory --config.num_epochs="$EPOCHS"
      --config.seeds="($SEED,)"
      --config.policy.source="$PWD/results/cifar10_cpu/search_v2/default"
      --config.eval.corruptions="()" --config.eval.cam_stability=False
      --config.write_plots=False --config.progress=False "$@")
for m in "${methods[@]}"; do
  start=$(date +%s)
  "${launch[@]}" "${args[@]}" --config.compare_methods="('$m',)"
  echo "gpu_paper_scale: $m trained and evaluated in $(( $(date +%s) - start )) s"
done
all=$(printf "'%s'," "${methods[@]}")
"${launch[@]}" "${args[@]}" --config.compare_methods="(${all})" --mode=report > "$OUT/report.txt"
echo "gpu_paper_scale: report in $OUT/report/ and $OUT/report.txt"
