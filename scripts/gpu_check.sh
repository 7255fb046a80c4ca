#!/usr/bin/env bash
# The GPU paths, checked in one run: about 8 minutes on one H100 or H200. On a machine
# without CUDA it runs the same steps and SKIPs those that need CUDA, saying why.
#
#     bash scripts/gpu_check.sh [--quick]
#
# On a lent device (the device tool): prepare the wheels here once (bash scripts/gpu_wheels.sh),
# then run `bash scripts/gpu_check.sh` with `.whl` in carry and timeout_s about 540.
#
# Steps: the environment; carried wheels installed to /tmp/site when the image lacks them; the
# project's imports; pytest on tests/test_gpu.py (-m gpu), on tests/test_engine.py with
# GENIUS_TEST_DEVICE=cuda and on the test files of bf16 training, LoRA, resume, lm-eval's HF model
# and the diagnostics; one Genius round on the toy through the CLI at model.dtype bfloat16, full
# fine-tuning, then LoRA; a training run at bf16 killed (SIGKILL) and resumed; the round's sampling,
# pairs and training twice, saying which files are byte-identical on the device; an online (GRPO)
# round of each label-free reward (TTRL, INTUITOR, RENT) at bf16; `accelerate launch`
# with configs/accelerate/fsdp.yaml and zero3.yaml at one process; bench/engine_throughput.py small.
# Each step ends PASS, FAIL or SKIP (with the reason); a table closes the run; the exit status is
# 1 if any step FAILED.
#
# Everything printed goes to one log, $OUT/gpu_check.log (OUT unset: a new folder under /tmp,
# named at the start and the end). Work folders live under /tmp, not under $OUT.
#
# Environment: PYTHON (default python3), OUT, GPU_CHECK_QUICK=1 (= --quick, for the CPU dry run in
# tests/test_gpu_check.py: smaller sizes, no diagnostics and no LoRA evaluation in the rounds, and
# without the pytest run of the CPU test files and the 8B-shaped bench, which `make test` and a GPU
# run cover), GPU_CHECK_WHEELS=auto|1|0 (install .whl/: auto = when lm_eval does not
# import), GPU_CHECK_STEP_TIMEOUT (seconds per command, default 300), GPU_CHECK_KEEP=1 (keep the work folder).
set -u -o pipefail

PYTHON=${PYTHON:-python3}
case $PYTHON in  # a relative path (.venv/bin/python) must survive the cd below; links stay unresolved
    */*) PYTHON=$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON") ;;
esac
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2
QUICK=${GPU_CHECK_QUICK:-0}
for arg in "$@"; do
    case $arg in
        --quick) QUICK=1 ;;
        -h | --help) sed -n '2,28p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_check: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done
if [ -n "${OUT:-}" ]; then
    LOGDIR=$OUT
    mkdir -p "$LOGDIR"
else
    LOGDIR=$(mktemp -d /tmp/gpu-check.XXXXXX)
fi
LOG=$LOGDIR/gpu_check.log
WORK=$(mktemp -d /tmp/gpu-check-work.XXXXXX)
[ "${GPU_CHECK_KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT  # GPU_CHECK_KEEP=1 keeps the work folders
STEP_TIMEOUT=${GPU_CHECK_STEP_TIMEOUT:-300}
SITE=${GPU_CHECK_SITE:-/tmp/site}

export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HOME=$WORK/hf
export WANDB_MODE=disabled DVC_NO_ANALYTICS=1 PREFECT_HOME=$WORK/prefect
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}

RESULTS=()   # "name|status|seconds|note"
SKIPFILE=$WORK/.skip

py() { timeout "$STEP_TIMEOUT" "$PYTHON" "$@"; }
skip() { echo "$*" >"$SKIPFILE"; exit 77; }   # inside a step body (a subshell): SKIP with a reason

# run_step NAME cuda|any BODY: BODY runs in a subshell with -e; exit 0 PASS, 77 SKIP, else FAIL
run_step() {
    local name=$1 need=$2 body=$3 start=$SECONDS rc note=""
    echo
    echo "=== [$name] $(date -u +%H:%M:%S)"
    if [ "$need" = cuda ] && [ "$CUDA" != 1 ]; then
        note="needs CUDA: $CUDA_WHY"
        echo "--- [$name] SKIP ($note)"
        RESULTS+=("$name|SKIP|0|$note")
        return
    fi
    rm -f "$SKIPFILE"
    (set -e; "$body")
    rc=$?
    local took=$((SECONDS - start))
    if [ $rc -eq 0 ]; then
        echo "--- [$name] PASS (${took}s)"
        RESULTS+=("$name|PASS|$took|")
    elif [ $rc -eq 77 ]; then
        note=$(cat "$SKIPFILE" 2>/dev/null)
        echo "--- [$name] SKIP ($note)"
        RESULTS+=("$name|SKIP|$took|$note")
    else
        [ $rc -eq 124 ] && note="timed out after ${STEP_TIMEOUT}s" || note="exit $rc"
        echo "--- [$name] FAIL ($note)"
        RESULTS+=("$name|FAIL|$took|$note")
    fi
}

# ------------------------------------------------------------------------------- steps

step_env() {
    echo "root $ROOT, python $PYTHON, log $LOG, work $WORK, quick $QUICK"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
    py - "$WORK/.cuda" <<'EOF'
import platform, sys, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(), "bf16", torch.cuda.is_bf16_supported())
why = "ok" if torch.cuda.is_available() else f"torch.cuda.is_available() is False (torch {torch.__version__})"
open(sys.argv[1], "w").write(why)
EOF
}

step_wheels() {
    local mode=${GPU_CHECK_WHEELS:-auto}
    ls .whl/*.whl >/dev/null 2>&1 || skip "no .whl/ folder (scripts/gpu_wheels.sh makes it)"
    [ "$mode" = 0 ] && skip "GPU_CHECK_WHEELS=0"
    if [ "$mode" = auto ] && py -c "import lm_eval, datasets" 2>/dev/null; then
        skip "not needed: lm_eval and datasets already import here"
    fi
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl
    touch "$WORK/.site"
    ls "$SITE" | grep -i dist-info
}

step_imports() {
    py - <<'EOF'
import importlib.metadata as md, sys
import genius.stages.cli, genius.stages.rounds, genius.stages.pipeline, genius.training.launch, genius.tracking  # the CLI's paths
import genius.training.recipe, genius.evaluation.harness, genius.evaluation.tasks, genius.evaluation.diagnostics, genius.algorithm.sampling
from lm_eval.models.huggingface import HFLM  # noqa: F401 (what eval.engine: hf builds)
import datasets, peft, accelerate  # noqa: F401
for name in ("torch", "transformers", "peft", "accelerate", "lm_eval", "datasets", "tokenizers", "safetensors", "huggingface_hub", "pyarrow", "deepspeed"):
    try:
        print(f"{name:16} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name:16} (not installed)")
heavy = [m for m in ("prefect", "dvc", "wandb") if m in sys.modules]
assert not heavy, f"the stages' imports pulled in {heavy}"
EOF
}

pytest_run() { py -m pytest -q -p no:cacheprovider -rs "$@"; }

step_pytest_gpu() {
    if [ "$CUDA" = 1 ]; then
        pytest_run -m gpu tests/test_gpu.py
    else  # the same tests, to see that each one skips cleanly without CUDA
        pytest_run -m gpu tests/test_gpu.py | tee "$WORK/pytest_gpu.txt"
        grep -Eq "[0-9]+ skipped" "$WORK/pytest_gpu.txt" && ! grep -Eq "[0-9]+ passed" "$WORK/pytest_gpu.txt"
        skip "needs CUDA: $CUDA_WHY (ran: every -m gpu test skipped cleanly)"
    fi
}

step_pytest_engine_cuda() { GENIUS_TEST_DEVICE=cuda pytest_run tests/test_engine.py; }

step_pytest_cpu_files() {
    [ "$QUICK" = 1 ] && skip "--quick: these run in make test on CPU"
    # the paths' own test files (CPU, one thread) under this machine's packages and versions; the
    # lm_eval CLI test needs the `lm_eval` script beside the interpreter, which carried wheels lack
    local par=()
    [ "$CUDA" = 1 ] && py -c "import xdist" 2>/dev/null && par=(-n 8)  # a device has 16 cores
    pytest_run "${par[@]}" tests/test_train.py tests/test_train_resume.py tests/test_diagnostics.py \
        tests/test_evaluate.py -k "not vllm and not lm_eval_cli"
}

genius() {
    echo "+ genius $* ($(date -u +%H:%M:%S))"
    py -m genius "$@"
}

# TINY (tests/conftest.py): seconds-scale sizes, same code path; bf16, no tracking
TINY=(
    toy.pretrain_steps=30 toy.hidden_size=32 toy.num_queries=40 toy.num_test=16 queries.per_round=6
    sampling.num_foresight_steps=3 sampling.max_rollout_tokens=48 training.batch_size=8 eval.batch_size=16
    eval.diagnostics_samples=4 model.dtype=bfloat16 tracking.wandb_mode=disabled
)
# --quick: smaller still (one eval task on 8 problems, no diagnostics), for the CPU dry run in tests
[ "$QUICK" = 1 ] && TINY+=(
    toy.pretrain_steps=10 sampling.num_foresight_steps=2 eval.tasks=[genius_toy] eval.limit=8
    eval.diagnostics=false
)

step_round_full() {
    mkdir -p "$WORK/full"
    cp params.yaml rounds.yaml "$WORK/full/"
    cp -r eval "$WORK/full/eval"
    cd "$WORK/full"
    py - "${TINY[@]}" <<'EOF'
import sys, yaml
data = yaml.safe_load(open("params.yaml"))
for item in sys.argv[1:]:
    key, value = item.split("=", 1)
    section, leaf = key.split(".")
    data[section][leaf] = yaml.safe_load(value)
open("params.yaml", "w").write(yaml.safe_dump(data))
EOF
    genius toy
    genius ingest --round 1
    cp -r "$WORK/full" "$WORK/ingested"  # the round up to its queries: the determinism step starts here
    genius sample --round 1
    genius pairs --round 1
    cp -r "$WORK/full" "$WORK/pairs"  # the round up to its pairs: LoRA, resume and FSDP start here
    genius train --round 1
    genius evaluate --round 1
    py - <<'EOF'
import json
t = json.load(open("runs/r1/train.json"))
print({k: t.get(k) for k in ("finetune", "precision", "steps", "loss_first", "loss_last", "tokens_per_second")})
m = json.load(open("runs/r1/metrics.json"))
print({k: m.get(k) for k in ("accuracy", "diagnostics")})
assert t["finetune"] == "full" and t["steps"] > 0
EOF
}

from_pairs() {  # a fresh copy of the round up to its pairs, as cwd
    [ -d "$WORK/pairs" ] || { echo "no round with pairs: the full round's step failed before them"; exit 1; }
    rm -rf "$WORK/$1"
    cp -r "$WORK/pairs" "$WORK/$1"
    cd "$WORK/$1"
}

step_round_lora() {
    from_pairs lora
    local lora=(-S training.finetune=lora -S training.lora_r=8 -S training.learning_rate=1e-3)
    genius "${lora[@]}" train --round 1
    if [ "$QUICK" = 1 ]; then
        echo "--quick: no evaluation of the LoRA round (the full round's step evaluated; this checkpoint is the adapter)"
    else
        genius "${lora[@]}" evaluate --round 1
    fi
    py - <<'EOF'
import json, os
t = json.load(open("runs/r1/train.json"))
print({k: t.get(k) for k in ("finetune", "precision", "reference", "steps", "loss_first", "loss_last")})
assert t["finetune"] == "lora" and t["steps"] > 0
files = set(os.listdir("runs/r1/checkpoint"))  # the adapter and its lineage (genius/engines/lineage.py), no weights
assert {"adapter_model.safetensors", "genius_lineage.json"} <= files and "model.safetensors" not in files, files
from genius.engines.loading import load_model
load_model("runs/r1/checkpoint", "float32", "cpu")  # the base with the adapter merged
if os.path.exists("runs/r1/metrics.json"):
    print(json.load(open("runs/r1/metrics.json"))["accuracy"])
EOF
}

step_kill_resume() {
    from_pairs resume
    # batch 2, 2 epochs: a dozen steps or more; a state every 2 steps; SIGKILL once step 3 is done
    local over=(training.batch_size=2 training.epochs=2 training.save_every=2)
    "$PYTHON" - "${over[@]}" >"$WORK/resume/child.txt" 2>&1 <<'EOF' &  # not py: $! must be python itself
import sys, time
from genius.stages import rounds
from genius.config import load_params

def track(row, step):
    print(f"STEP {step}", flush=True)
    time.sleep(0.5)  # leaves the parent time to kill between steps

rounds.run_train(load_params("params.yaml", sys.argv[1:]), 1, print, track)
EOF
    local child=$! waited=0
    until grep -q "^STEP 3$" "$WORK/resume/child.txt" 2>/dev/null; do
        if ! kill -0 $child 2>/dev/null || [ $waited -ge 1200 ]; then
            cat "$WORK/resume/child.txt"
            echo "the training child ended (or stalled) before step 3"
            exit 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    kill -9 $child
    wait $child 2>/dev/null || true
    tail -5 "$WORK/resume/child.txt"
    [ ! -e runs/r1/checkpoint ] || { echo "a checkpoint exists after the kill"; exit 1; }
    py -c "import json; print('saved state: step', json.load(open('runs/r1/train_state/state.json'))['step'])"
    local sets=()
    for o in "${over[@]}"; do sets+=(-S "$o"); done
    genius "${sets[@]}" train --round 1 | tee "$WORK/resume/rerun.txt"
    grep -q "resuming from step 2/" "$WORK/resume/rerun.txt"
    [ -f runs/r1/checkpoint/model.safetensors ] && [ ! -e runs/r1/train_state ]
    py -c "import json; t = json.load(open('runs/r1/train.json')); print(t['resumed_from_step'], t['steps'], t['precision']); assert t['resumed_from_step'] == 2"
}

step_determinism() {
    # the round's sampling, pairs and training twice from the same queries, in two processes: which
    # files are byte-identical on this device (CPU: all of them, tests/test_determinism.py; CUDA: what
    # the kernels make so, reported, since bf16 reductions on a GPU need not be order-stable)
    [ -d "$WORK/ingested" ] || { echo "no ingested round: the full round's step failed before it"; exit 1; }
    local run
    for run in a b; do
        rm -rf "$WORK/det-$run"
        cp -r "$WORK/ingested" "$WORK/det-$run"
        (cd "$WORK/det-$run" && genius sample --round 1 && genius pairs --round 1 && genius train --round 1) >"$WORK/det-$run.txt"
    done
    py - "$WORK/det-a/runs/r1" "$WORK/det-b/runs/r1" <<'EOF2'
import pathlib, sys
from safetensors.torch import load_file
a, b = map(pathlib.Path, sys.argv[1:])
files = ["samples.jsonl", "pairs.jsonl", "reference_logps.safetensors", "checkpoint/model.safetensors"]

def equal(x, y):  # tensors bit for bit (a .safetensors header may carry how long it took); other files byte for byte
    if x.suffix != ".safetensors":
        return x.read_bytes() == y.read_bytes()
    tx, ty = load_file(x), load_file(y)
    return tx.keys() == ty.keys() and all(tx[k].view(-1).view(torch.uint8).equal(ty[k].view(-1).view(torch.uint8)) for k in tx)

import torch
same = {}
for name in files:
    if (a / name).exists():
        same[name] = equal(a / name, b / name)
        print(f"{name:32} {'byte-identical' if same[name] else 'DIFFERS'}")
    else:
        print(f"{name:32} (not written)")
assert same.get("samples.jsonl") is not None and same.get("checkpoint/model.safetensors") is not None
EOF2
}

step_grpo() {
    # one online round of each label-free reward (issue 25): GRPO through TRL at model.dtype
    # bfloat16, 3 optimizer steps of 2 queries x 4 responses from the ingested round
    [ -d "$WORK/ingested" ] || { echo "no ingested round: the full round's step failed before it"; exit 1; }
    py -c "import trl" 2>/dev/null || skip "trl does not import here (the rl extra)"
    local name names=(ttrl intuitor rent)
    [ "$QUICK" = 1 ] && names=(ttrl)  # the dry run: the step's path once; a GPU run: each reward
    for name in "${names[@]}"; do
        rm -rf "$WORK/grpo-$name"
        cp -r "$WORK/ingested" "$WORK/grpo-$name"
        (
            cd "$WORK/grpo-$name"
            genius -S method.name=$name -S grpo.num_generations=4 -S grpo.batch_queries=2 \
                -S grpo.max_completion_tokens=16 train --round 1
            py - "$name" <<'EOF2'
import json, sys
t = json.load(open("runs/r1/train.json"))
print(sys.argv[1], {k: t.get(k) for k in ("precision", "steps", "reward_first", "reward_last", "kl_last", "tokens")})
assert t["steps"] > 0, t  # precision: bf16 on a GPU with bf16 (training.mixed_precision auto), fp32 on a CPU
EOF2
        )
    done
}

accelerate_train() {  # accelerate_train CONFIG: `genius train` runs `accelerate launch --config_file CONFIG --num_processes 1`
    if [ "$CUDA" = 1 ] || [ "$QUICK" != 1 ]; then  # what the launched process is given
        printf 'from accelerate import Accelerator\na = Accelerator()\nprint("launched:", a.distributed_type, a.mixed_precision, a.device)\n' >"$WORK/dist.py"
        py -m accelerate.commands.launch --config_file "$ROOT/$1" --num_processes 1 "$WORK/dist.py"
    fi
    genius -S training.launch=accelerate -S training.accelerate_config="$ROOT/$1" -S training.num_processes=1 \
        train --round 1 | tee "$WORK/accelerate.txt"
    grep -q "accelerate.commands.launch --config_file $ROOT/$1" "$WORK/accelerate.txt"
    py -c "import json; t = json.load(open('runs/r1/train.json')); print({k: t.get(k) for k in ('precision', 'steps', 'loss_last')}); assert t['steps'] > 0"
}

step_fsdp() {
    from_pairs fsdp
    accelerate_train configs/accelerate/fsdp.yaml
}

step_zero3() {
    py -c "import deepspeed" >/dev/null 2>&1 || skip "deepspeed does not import here (not in the project's deps; scripts/gpu_wheels.sh builds and carries it to a device)"
    from_pairs zero3
    accelerate_train configs/accelerate/zero3.yaml
}

step_bench() {
    local out=$LOGDIR/engine_throughput.json
    if [ "$CUDA" = 1 ]; then
        # 8B shapes at 4 layers (random bf16 weights): 64 prompts x 8 samples, 64 new tokens
        py -m bench.engine_throughput --layers 4 --prompts 64 --n 8 --prompt-tokens 256 --new-tokens 64 --out "$out"
    else
        [ "$QUICK" = 1 ] && skip "--quick: even one 8B-shaped layer is ~5 GB of fp32 weights on CPU"
        py -m bench.engine_throughput --layers 1 --prompts 2 --n 2 --prompt-tokens 16 --new-tokens 4 --out "$out"
    fi
}

# ------------------------------------------------------------------------------- main

main() {
    echo "gpu_check: $(date -u '+%Y-%m-%d %H:%M:%S UTC') on $(hostname); log: $LOG"
    run_step env any step_env
    run_step wheels any step_wheels
    if [ -f "$WORK/.site" ]; then
        export PYTHONPATH=$SITE:$PYTHONPATH PATH=$SITE/bin:$PATH
        echo "PYTHONPATH=$PYTHONPATH"
    fi
    CUDA_WHY=$(cat "$WORK/.cuda" 2>/dev/null || echo "torch did not import")
    if [ "$CUDA_WHY" = ok ]; then CUDA=1; else CUDA=0; fi
    echo "CUDA: $CUDA ($CUDA_WHY)"
    run_step imports any step_imports
    run_step pytest-gpu-marked any step_pytest_gpu
    run_step pytest-engine-cuda cuda step_pytest_engine_cuda
    run_step round-bf16-full any step_round_full
    run_step round-bf16-lora any step_round_lora
    run_step kill-resume-bf16 any step_kill_resume
    run_step determinism-bf16 any step_determinism
    run_step grpo-bf16 any step_grpo
    run_step accelerate-fsdp-1proc any step_fsdp
    run_step accelerate-zero3-1proc any step_zero3
    run_step bench-engine-throughput any step_bench
    run_step pytest-path-files any step_pytest_cpu_files  # last: CPU tests, the least news on a GPU

    echo
    echo "=== summary ($(date -u +%H:%M:%S), CUDA $CUDA, quick $QUICK)"
    printf '| %-24s | %-4s | %5s | %s\n' step result secs note
    local failed=0 row name status secs note
    for row in "${RESULTS[@]}"; do
        IFS='|' read -r name status secs note <<<"$row"
        printf '| %-24s | %-4s | %5s | %s\n' "$name" "$status" "$secs" "$note"
        [ "$status" = FAIL ] && failed=$((failed + 1))
    done
    echo "gpu_check: $failed step(s) FAILED; log: $LOG"
    [ $failed -eq 0 ]
}

main 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
