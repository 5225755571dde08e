#!/usr/bin/env bash
# The comparison suite: train and evaluate every row, then print the Table-2-shaped summary.
#
#   experiments/run_compare.sh [cpu|paper] [RUNS_DIR] [--config.FIELD=VALUE ...]
#
#   cpu    (default) the scale of the README's "Experiments" table: 2-core CPU, synthetic data.
#   paper  the paper's sizes (128x128, 2048 points, batch 32, 100k steps), for a GPU; add
#          --config.data_dir=/path/to/shapenet_root to train on real ShapeNet.
#
# RUNS_DIR defaults to runs/compare_<scale>; each row trains in RUNS_DIR/<config name>.
# Re-running resumes: an interrupted row continues from its last checkpoint, a row whose
# eval_test.json exists is skipped. The summary goes to RUNS_DIR/summary.{md,json}.
# DRY_RUN=1 prints the commands instead of running them.
set -euo pipefail
run() { if [[ -n "${DRY_RUN:-}" ]]; then echo "$*"; else "$@"; fi; }
scale="${1:-cpu}"
runs="${2:-runs/compare_${scale}}"
shift $(( $# < 2 ? $# : 2 ))
case "$scale" in
  cpu) other_points=compare_points2048 ;;   # the base row has 1024 points at this scale
  paper) other_points=compare_points1024 ;; # and 2048 at this one
  *) echo "run_compare.sh: scale must be 'cpu' or 'paper', got '$scale'" >&2; exit 2 ;;
esac
rows=(compare compare_resnet18 compare_resnet34 compare_kl0 compare_kl1 compare_cd_only
      compare_emd_only "$other_points")
dirs=()
for row in "${rows[@]}"; do
  dir="$runs/$row"
  dirs+=("$dir")
  if [[ -f "$dir/eval_test.json" ]]; then
    echo "== $row: already evaluated ($dir/eval_test.json)"
    continue
  fi
  [[ -n "${DRY_RUN:-}" ]] || echo "== $row: training in $dir"
  run recon-jax train --config "experiments/configs/$row.py:$scale" --workdir "$dir" "$@"
  run recon-jax eval --workdir "$dir"
done
run recon-jax summarize "${dirs[@]}" --out "$runs/summary"
