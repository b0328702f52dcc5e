#!/usr/bin/env bash
# The README's sweep grid, queued under distinct names and run one at a time:
#   grid-l{L}-s{S}{SUFFIX}  model.n_layers L in 1,2,3 x seed S in 0,1,2
#   grid-l3h4{SUFFIX}       model.n_layers=3, model.n_heads=4
#   grid-attn{SUFFIX}       an attention-only model (model.attn_only=true)
# then `dvc queue start -j 1`. Run from the project root, with committed code (a queued experiment sees
# only files tracked by git). Rerunnable: pass a suffix so the names do not clash with earlier runs'
# (experiment names are shared by every checkout of the repository):
#   scripts/sweep_grid.sh            # grid-l1-s0 ... grid-attn
#   scripts/sweep_grid.sh -v2        # grid-l1-s0-v2 ... grid-attn-v2
# Options: --no-start (queue only), JOBS=N in the environment for `dvc queue start -j N` (default 1).
# Then: `dvc queue status`, `dvc queue logs NAME`, and
#   python -m palindrome_lens.compare --grid grid-SUFFIX-pattern (see docs/experiments.md).
set -euo pipefail

suffix=""
start=1
for arg in "$@"; do
    case "$arg" in
        --no-start) start=0 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) suffix="$arg" ;;
    esac
done
[[ "$suffix" =~ ^[A-Za-z0-9._-]*$ ]] || { echo "sweep_grid: bad suffix '$suffix' (letters, digits, . _ -)" >&2; exit 2; }

python=${PYTHON:-python}
names=()
overrides=()
for layers in 1 2 3; do
    for seed in 0 1 2; do
        names+=("grid-l${layers}-s${seed}${suffix}")
        overrides+=("model.n_layers=${layers} seed=${seed}")
    done
done
names+=("grid-l3h4${suffix}" "grid-attn${suffix}")
overrides+=("model.n_layers=3 model.n_heads=4" "model.attn_only=true")

if [[ -n "$(git status --porcelain --untracked-files=no)" ]]; then
    echo "sweep_grid: warning: uncommitted changes to tracked files; queued runs see only the last commit" >&2
fi

# Every run's params must pass the validator before anything is queued (the same check every stage runs).
for i in "${!names[@]}"; do
    # shellcheck disable=SC2086  # the overrides are space-separated key=value words
    "$python" - "${names[$i]}" ${overrides[$i]} <<'EOF'
import sys

import yaml

from palindrome_lens.errors import PalindromeLensError
from palindrome_lens.params import validate

name, *pairs = sys.argv[1:]
raw = yaml.safe_load(open("params.yaml", encoding="utf-8"))
for pair in pairs:
    key, _, value = pair.partition("=")
    *path, last = key.split(".")
    node = raw
    for part in path:
        node = node[part]
    if last not in node:
        sys.exit(f"sweep_grid: {name}: {key} is not a key of params.yaml")
    node[last] = yaml.safe_load(value)
try:
    validate(raw)
except PalindromeLensError as exc:
    sys.exit(f"sweep_grid: {name}: invalid params ({' '.join(pairs)}): {exc}")
print(f"sweep_grid: {name}: params valid ({' '.join(pairs)})")
EOF
done

# Names must be new: an existing experiment of that name (any checkout, any baseline) stops the script.
existing=$(git for-each-ref --format='%(refname:lstrip=-1)' refs/exps; dvc queue status 2>/dev/null | awk 'NR > 1 {print $2}')
for name in "${names[@]}"; do
    if grep -qxF "$name" <<<"$existing"; then
        echo "sweep_grid: an experiment named $name exists already; pass a suffix, e.g. $0 -v2" >&2
        exit 2
    fi
done

for i in "${!names[@]}"; do
    args=()
    for pair in ${overrides[$i]}; do args+=(-S "$pair"); done
    dvc exp run --queue -n "${names[$i]}" "${args[@]}"
done

if (( start )); then
    dvc queue start -j "${JOBS:-1}"
    echo "sweep_grid: ${#names[@]} runs queued and the queue started; follow with: dvc queue status"
else
    echo "sweep_grid: ${#names[@]} runs queued; start them with: dvc queue start -j ${JOBS:-1}"
fi
