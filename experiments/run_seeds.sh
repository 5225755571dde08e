#!/usr/bin/env bash
# Seed replicates of one experiment: how much of a difference between rows is noise.
#
#   experiments/run_seeds.sh CONFIG RUNS_DIR SEED... [-- --config.FIELD=VALUE ...]
#
# e.g. experiments/run_seeds.sh experiments/configs/compare.py runs/compare_cpu 1 2
# trains and evaluates CONFIG once per seed in RUNS_DIR/<config name>_seed<SEED> (CONFIG may
# carry a scale, compare.py:paper), then prints the summary of those runs. Like run_compare.sh
# it resumes, skips evaluated runs, and DRY_RUN=1 prints the commands instead.
set -euo pipefail
if [[ $# -lt 3 ]]; then
  echo "usage: run_seeds.sh CONFIG RUNS_DIR SEED... [-- --config.FIELD=VALUE ...]" >&2
  exit 2
fi
config="$1"; runs="$2"; shift 2
seeds=()
while [[ $# -gt 0 && "$1" != "--" ]]; do seeds+=("$1"); shift; done
[[ $# -gt 0 ]] && shift  # the "--"
run() { if [[ -n "${DRY_RUN:-}" ]]; then echo "$*"; else "$@"; fi; }
name="$(basename "${config%%:*}" .py)"
dirs=()
for seed in "${seeds[@]}"; do
  dir="$runs/${name}_seed$seed"
  dirs+=("$dir")
  if [[ -f "$dir/eval_test.json" ]]; then
    echo "== $dir: already evaluated"
    continue
  fi
  run recon-jax train --config "$config" --workdir "$dir" --config.seed="$seed" "$@"
  run recon-jax eval --workdir "$dir"
done
run recon-jax summarize "${dirs[@]}"
