#!/usr/bin/env bash
# Download, here, the wheels scripts/gpu_check.sh needs on a lent GPU machine (docs: the device
# tool's README): Python 3.12, manylinux x86_64, --no-deps, every needed dependency named.
#
#     bash scripts/gpu_wheels.sh          # -> .whl/ (git-ignored through .git/info/exclude)
#
# The device image already holds torch (2.11+cu130), peft, accelerate, safetensors, tokenizers,
# huggingface-hub 1.33, pyarrow, pandas, xxhash, fsspec, numpy, pyyaml, jinja2, scikit-learn,
# sacrebleu, sympy, pytest. What the check's paths import beyond that (read off sys.modules after a
# LoRA training, an lm-eval run on the toy tasks and the diagnostics, with genius.stages.cli, rounds,
# pipeline, launch and tracking imported):
#   lm-eval           genius/evaluation/harness.py, tasks.py (lazy: imported when a stage evaluates)
#   datasets          lm-eval's task loading (top-level import of lm_eval.api.task)
#   dill, multiprocess  datasets' hashing and map workers (top-level imports of datasets)
#   transformers 5.24 pyproject's lower bound ("verified together"); the image has 5.17. Its own
#                     needs (huggingface-hub>=1.31, tokenizers>=0.23.1, safetensors>=0.8, regex,
#                     typer) are in the image.
#   more-itertools    lm-eval's small pure-Python need, imported by some of its code paths.
# lm-eval's sqlitedict (request caching) and word2number (one filter) are sdists only on PyPI and
# neither is imported on the toy tasks' path, so they stay behind.
# Not needed there: prefect, dvc, wandb (genius/tracking.py imports it only when tracking is not
# disabled; the check runs with tracking.wandb_mode=disabled), ruamel.yaml (only `genius pipeline`
# writing overrides), reasoning-gym (only reasoning_gym: sources), gguf (only import-model),
# evaluate / pytablewriter / rouge-score (lm-eval imports them only for metrics the toy tasks do
# not use), vllm.
#
# DeepSpeed (for the ZeRO-3 step): PyPI has only its sdist (its one wheel is 0.3.1 from 2020).
# With DS_BUILD_OPS=0 (its default) the sdist builds, here, into a pure-Python wheel in about a
# minute: no op is compiled at install; the ops ZeRO-3 uses are JIT-built there with the image's
# nvcc and ninja if at all (a plain torch AdamW needs none). Its needs the image lacks: hjson and
# pydantic 2 (pydantic-core, annotated-types, typing-inspection, a new enough typing-extensions).
# GPU_WHEELS_DEEPSPEED=0 leaves all of that out (gpu_check.sh then SKIPs ZeRO-3, saying why).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-python3}
DEST=${WHEELS_DIR:-.whl}
LIMIT_MIB=${WHEELS_LIMIT_MIB:-48}  # the working tree travels within 64 MiB: leave room for the repo

WHEELS=(
    lm-eval==0.4.13
    datasets==5.2.0
    dill==0.4.1
    multiprocess==0.70.19
    transformers==5.24.0
    more-itertools==11.2.1
)
DEEPSPEED=deepspeed==0.19.8
DEEPSPEED_NEEDS=(
    hjson==3.1.0
    pydantic==2.14.4
    pydantic-core==2.50.5
    annotated-types==0.8.0
    typing-inspection==0.4.5
    typing-extensions==4.16.0
)
[ "${GPU_WHEELS_DEEPSPEED:-1}" = 1 ] && WHEELS+=("${DEEPSPEED_NEEDS[@]}")

exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qxF "/$DEST/" "$exclude" 2>/dev/null || echo "/$DEST/" >>"$exclude"

rm -rf "$DEST"
mkdir -p "$DEST"
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$DEST" "${WHEELS[@]}"

if [ "${GPU_WHEELS_DEEPSPEED:-1}" = 1 ]; then
    # the sdist, built here without its ops; setup.py imports torch, so PYTHON must have it
    build=$(mktemp -d)
    "$PYTHON" -m pip download -q --no-deps --no-binary=:all: -d "$build" "$DEEPSPEED"
    DS_BUILD_OPS=0 "$PYTHON" -m pip wheel -q --no-deps --no-build-isolation -w "$DEST" "$build"/deepspeed-*.tar.gz
    rm -rf "$build"
fi

# one version of each, or the install there stops
dupes=$(ls "$DEST" | sed -E 's/-[0-9][^-]*-.*$//' | tr 'A-Z-' 'a-z_' | sort | uniq -d)
if [ -n "$dupes" ]; then
    echo "gpu_wheels: more than one version of: $dupes" >&2
    exit 1
fi

ls -l "$DEST"
bytes=$(du -cb "$DEST"/*.whl | tail -1 | cut -f1)
mib=$(( (bytes + 1048575) / 1048576 ))
echo "gpu_wheels: $(ls "$DEST"/*.whl | wc -l) wheels, ${bytes} bytes (~${mib} MiB) in $DEST/ (limit ${LIMIT_MIB} MiB)"
if [ "$mib" -gt "$LIMIT_MIB" ]; then
    echo "gpu_wheels: over ${LIMIT_MIB} MiB: the working tree must travel within 64 MiB" >&2
    exit 1
fi
echo "gpu_wheels: name $DEST in the device run's carry; scripts/gpu_check.sh installs them to /tmp/site"
