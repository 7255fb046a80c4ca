"""Our trainer against TRL's DPOTrainer: same pairs, same model, same batch; tokens/s and peak memory.

    .venv/bin/python -m bench.training                      # the toy (runs/toy/model, else built into /tmp)
    .venv/bin/python -m bench.training --hidden 256 --layers 4   # a bigger random Llama, same tokenizer
    .venv/bin/python -m bench.training --model models/smollm2-135m-instruct --pairs 64 --batch-size 8
                                                            # any HF folder: SmolLM2 (`genius import-model`)
    .venv/bin/python -m bench.training --model DIR --contenders ours --threads 1 2   # threads, ours alone

Each trainer runs in its own process, one after the other (so peak memory is its own), on
`--threads` CPU threads (1 unless set: the `training.threads` default), DPO (sigmoid) with
beta 0.1, AdamW, linear schedule with 10% warm-up, gradient clipping 1.0, no dropout, the same
token ids (our tokenization, handed to TRL pre-tokenized).
Both train in fp32 (`--precision fp32`, our CPU default) or both under bf16 autocast
(`--precision bf16`, TRL's default even on CPUs). Three contenders:
  ours            genius.training.recipe.train_round: reference log-probs in one pass, no second model
  trl             DPOTrainer as configured by default: a reference model, a reference forward per step
  trl-precompute  DPOTrainer with precompute_ref_log_probs=True: one pass, then no reference model
tokens/s counts the non-padding tokens of every training sequence (chosen and rejected, prompt
included), epochs times, over the wall time from model load to saved checkpoint. Peak memory
is the process's peak RSS (ru_maxrss) and the rise of RSS over its level after imports and a
warm-up load of the model (sampled every 5 ms): the rise is what training itself holds. Requires trl (`pip install -e '.[bench]'`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
from genius.algorithm.records import PreferencePair
from genius.layout import RoundPaths

CONTENDERS = ("ours", "trl", "trl-precompute")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=2048, help="pairs: the first of --pairs-from, else synthetic")
    parser.add_argument("--pairs-from", default=str(RoundPaths.of(ROOT / "runs", 1).pairs), help="a round's pairs.jsonl")
    parser.add_argument("--batch-size", type=int, default=32, help="pairs per optimizer step")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="runs per contender; the fastest is reported")
    parser.add_argument("--hidden", type=int, default=0, help="bench a random Llama of this width instead of the toy")
    parser.add_argument("--layers", type=int, default=4, help="its depth (with --hidden)")
    parser.add_argument(
        "--precision", choices=("fp32", "bf16"), default="fp32", help="both trainers: fp32, or bf16 autocast"
    )
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS), help="which trainers run")
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="torch threads; several: each contender at each")
    parser.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--model", help="an HF model folder to bench instead of the toy")
    parser.add_argument("--pairs-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    work = Path(tempfile.mkdtemp(prefix="genius-bench-"))
    model = bench_model(args, work)
    pairs = bench_pairs(Path(args.pairs_from), args.pairs)
    (work / "bench-pairs.json").write_text(json.dumps([p.to_json() for p in pairs]))
    print(
        f"model {model}; {len(pairs)} pairs, batch {args.batch_size}, {args.epochs} epoch(s), {args.precision}, "
        f"threads {args.threads}, best of {args.repeats}, each repeat of every contender in turn"
    )
    runs = {(name, threads): [] for name in args.contenders for threads in args.threads}
    for _ in range(args.repeats):  # interleaved, so a change of load hits every contender alike
        for name, threads in runs:
            cmd = [sys.executable, "-m", "bench.training", "--worker", name, "--model", model, "--pairs-file", str(work / "bench-pairs.json"),
                   "--batch-size", str(args.batch_size), "--epochs", str(args.epochs), "--precision", args.precision,
                   "--threads", str(threads)]  # fmt: skip
            out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ | {"TQDM_DISABLE": "1"})
            if out.returncode != 0:
                sys.exit(f"{name} failed:\n{out.stderr[-3000:]}")
            runs[name, threads].append(json.loads(out.stdout.strip().splitlines()[-1]))
    results = {
        key: min(r, key=lambda r: r["seconds"]) | {"peak_rss_mb": min(x["peak_rss_mb"] for x in r), "rss_rise_mb": min(x["rss_rise_mb"] for x in r)}
        for key, r in runs.items()
    }
    report(results)


def report(results: dict) -> None:
    """`results[(trainer, threads)]`: a table, then ours against each other trainer at the same threads,
    and each trainer's threads against its first."""
    print(
        "\n| trainer | threads | steps | tokens | seconds | tokens/s | peak RSS MB | RSS rise MB |\n|---|--:|--:|--:|--:|--:|--:|--:|"
    )
    for (name, threads), r in results.items():
        print(
            f"| {name} | {threads} | {r['steps']} | {r['tokens']} | {r['seconds']:.2f} | {r['tokens_per_second']:.0f} | {r['peak_rss_mb']:.0f} | {r['rss_rise_mb']:.0f} |"
        )
    for (name, threads), r in results.items():
        ours = results.get(("ours", threads))
        if name != "ours" and ours:
            print(
                f"{threads} thread(s), ours vs {name}: tokens/s x{ours['tokens_per_second'] / r['tokens_per_second']:.2f} (target >= 1.2), "
                f"peak RSS x{ours['peak_rss_mb'] / r['peak_rss_mb']:.2f}, RSS rise x{ours['rss_rise_mb'] / max(r['rss_rise_mb'], 1e-9):.2f} (target <= 1)"
            )
        first = next(t for n, t in results if n == name)
        if threads != first:
            print(f"{name}: {threads} threads vs {first}: tokens/s x{r['tokens_per_second'] / results[name, first]['tokens_per_second']:.2f}")


def bench_model(args, work: Path) -> str:
    """--model; runs/toy/model when built, else a quickly built toy in /tmp; or a random Llama of --hidden width."""
    if args.model:
        return args.model
    if args.hidden:
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        from genius.toy.tokenizer import build_tokenizer

        torch.manual_seed(0)
        tok = build_tokenizer()
        heads = max(1, args.hidden // 64)
        config = LlamaConfig(
            vocab_size=len(tok), hidden_size=args.hidden, intermediate_size=3 * args.hidden, num_hidden_layers=args.layers,
            num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=128, tie_word_embeddings=True,
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        )  # fmt: skip
        LlamaForCausalLM(config).save_pretrained(work / "model")
        tok.save_pretrained(work / "model")
        return str(work / "model")
    if (ROOT / "runs" / "toy" / "model" / "config.json").exists():
        return str(ROOT / "runs" / "toy" / "model")
    toy = Path(tempfile.gettempdir()) / "genius-bench-toy"
    if not (toy / "model" / "config.json").exists():
        from genius.config import ToyConfig
        from genius.toy.build import build_toy

        # throughput does not depend on how well the toy is trained: a short pre-training will do
        build_toy(ToyConfig(pretrain_steps=50, num_queries=100, num_test=10), toy, log=lambda m: None)
    return str(toy / "model")


def bench_pairs(found: Path, n: int) -> list[PreferencePair]:
    """The first n of a round's pairs when a run left some, else n toy pairs: a gold solution against a wrong answer."""
    from genius.toy import task

    if found.exists():
        rows = [line for line in found.read_text().splitlines() if line.strip()][:n]
        return [PreferencePair.from_json(json.loads(line)) for line in rows]
    rng, pairs = random.Random(0), []
    for i in range(n):
        problem = task.sample_problem(rng)
        chosen = task.solve(problem, rng)
        rejected = task.solve(problem, rng)
        rejected = rejected[: rejected.rindex(":") + 1] + str(problem.answer + rng.randint(1, 9))
        pairs.append(PreferencePair(f"b{i}", problem.query, 1, chosen, rejected, True, True, 0.0, 0.0, 0.0, 0.0, True))
    return pairs


class PeakRSS:
    """Samples this process's RSS every 5 ms in a thread; `rise` is the peak above the start."""

    def __init__(self):
        import psutil

        self.process, self.peak, self.running = psutil.Process(), 0, True
        self.start = self.process.memory_info().rss
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.005)

    def stop(self) -> float:
        self.running = False
        self.thread.join()
        return max(self.peak - self.start, 0) / 2**20


def warm_up(model_path: str) -> None:
    """Load the model and run it once before measuring: transformers imports much of itself
    lazily on the first load, which would otherwise count against whoever loads first."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path)
    model(input_ids=torch.tensor([[1, 2, 3]])).logits.sum().backward()
    del model


def worker(args) -> dict:
    import torch

    torch.set_num_threads(args.threads[0])
    warm_up(args.model)
    pairs = [PreferencePair.from_json(row) for row in json.loads(Path(args.pairs_file).read_text())]
    out = Path(tempfile.mkdtemp(prefix=f"genius-bench-{args.worker}-"))
    settings = {"lr": 5e-5, "beta": 0.1, "warmup_ratio": 0.1}
    if args.worker == "ours":
        import accelerate  # noqa: F401  (imported before the clock starts, as TRL's imports are)

        from genius.config import ModelConfig, TrainingConfig
        from genius.training.recipe import train_round

        cfg = TrainingConfig(loss="dpo", beta=settings["beta"], sft_weight=0.0, learning_rate=settings["lr"], warmup_ratio=settings["warmup_ratio"],
                             epochs=args.epochs, batch_size=args.batch_size, threads=args.threads[0],
                             mixed_precision="bf16" if args.precision == "bf16" else "no")  # fmt: skip
        memory = PeakRSS()
        start = time.perf_counter()
        metrics = train_round(pairs, args.model, RoundPaths(out).checkpoint, cfg, ModelConfig(device="cpu"), log=lambda m: None)
        seconds, steps = time.perf_counter() - start, metrics["steps"]
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.model)
    else:
        from datasets import Dataset
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from trl import DPOConfig, DPOTrainer

        from genius.training.batches import tokenize_pairs

        class PretokenizedDPOTrainer(DPOTrainer):
            """DPOTrainer fed our token ids as they are: the same batches, no retokenization."""

            def _prepare_dataset(self, dataset, *args, **kwargs):
                return dataset

        tokenizer = AutoTokenizer.from_pretrained(args.model)
        rows = [{"prompt_ids": p, "chosen_ids": c, "rejected_ids": r} for p, c, r in tokenize_pairs(tokenizer, pairs)]
        total_steps = args.epochs * -(-len(rows) // args.batch_size)
        config = DPOConfig(
            output_dir=str(out), per_device_train_batch_size=args.batch_size, num_train_epochs=args.epochs,
            learning_rate=settings["lr"], lr_scheduler_type="linear", warmup_steps=int(settings["warmup_ratio"] * total_steps),
            beta=settings["beta"], loss_type=["sigmoid"], max_grad_norm=1.0, weight_decay=0.0, use_cpu=True,
            report_to=[], save_strategy="no", logging_strategy="no", disable_dropout=True, max_length=None,
            precompute_ref_log_probs=args.worker == "trl-precompute", dataloader_num_workers=0, seed=0,
            bf16=args.precision == "bf16",  # TRL's default is bf16 autocast, even on a CPU
        )  # fmt: skip
        dataset = Dataset.from_list(rows)
        memory = PeakRSS()
        start = time.perf_counter()
        model = AutoModelForCausalLM.from_pretrained(args.model)
        trainer = PretokenizedDPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
        trainer.train()
        trainer.save_model(str(RoundPaths(out).checkpoint))
        seconds, steps = time.perf_counter() - start, trainer.state.global_step
    rise = memory.stop()
    from genius.training.batches import tokenize_pairs

    tokens = args.epochs * sum(2 * len(p) + len(c) + len(r) for p, c, r in tokenize_pairs(tokenizer, pairs))
    return {
        "steps": steps,
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_second": tokens / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_rise_mb": rise,
    }


if __name__ == "__main__":
    main()
