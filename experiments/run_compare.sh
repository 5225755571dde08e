#!/usr/bin/env bash
# The comparison suite: train and evaluate every variant of experiments/configs/compare.py, then
# print the Table-2-shaped summary.
#
#   experiments/run_compare.sh [cpu|paper] [RUNS_DIR] [--config.SECTION.FIELD=VALUE ...]
#
#   cpu    (default) the scale of the README's "Experiments" table: 2-core CPU, synthetic data.
#   paper  the paper's sizes (128x128, 2048 points, batch 32, 100k steps), for a GPU; add
#          --config.data.data_dir=/path/to/shapenet_root to train on real ShapeNet.
#
# The four extractor rows (base = the paper's, efficient_small, resnet18, resnet34) run once per
# seed in SEEDS (default "0 1 2"); the loss ablations (kl0, kl1, cd_only, emd_only) and the other
# point count once, with seed 0. Each run trains in RUNS_DIR/<variant>_seed<seed>. Re-running
# resumes: an interrupted run continues from its last checkpoint, a run whose eval_test.json
# exists is skipped. ROWS="base resnet18" limits the variants. The summary goes to
# RUNS_DIR/summary.{md,json}. DRY_RUN=1 prints the commands instead of running them.
set -euo pipefail
run() { if [[ -n "${DRY_RUN:-}" ]]; then echo "$*"; else "$@"; fi; }
scale="${1:-cpu}"
runs="${2:-runs/compare_${scale}}"
shift $(( $# < 2 ? $# : 2 ))
case "$scale" in
  cpu) other_points=points2048 ;;   # the base row has 1024 points at this scale
  paper) other_points=points1024 ;; # and 2048 at this one
  *) echo "run_compare.sh: scale must be 'cpu' or 'paper', got '$scale'" >&2; exit 2 ;;
esac
seeded=(base efficient_small resnet18 resnet34)
single=(kl0 kl1 cd_only emd_only "$other_points")
wanted=" ${ROWS:-${seeded[*]} ${single[*]}} "
dirs=()
train_eval() {  # variant seed
  local dir="$runs/$1_seed$2"
  dirs+=("$dir")
  if [[ -f "$dir/eval_test.json" ]]; then
    echo "== $1 seed $2: already evaluated ($dir/eval_test.json)"
    return
  fi
  [[ -n "${DRY_RUN:-}" ]] || echo "== $1 seed $2: training in $dir"
  run recon-jax train --config "experiments/configs/compare.py:$1,$scale" --workdir "$dir" \
    --config.run.seed="$2" "${extra[@]}"
  run recon-jax eval --workdir "$dir"
}
extra=("$@")
for variant in "${seeded[@]}"; do
  [[ "$wanted" == *" $variant "* ]] || continue
  for seed in ${SEEDS:-0 1 2}; do train_eval "$variant" "$seed"; done
done
for variant in "${single[@]}"; do
  [[ "$wanted" == *" $variant "* ]] || continue
  train_eval "$variant" 0
done
run recon-jax summarize "${dirs[@]}" --out "$runs/summary"
