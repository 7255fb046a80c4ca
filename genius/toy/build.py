"""Build the embedded default: the perm task's data and a tiny Llama pre-trained on it.

`build_toy` writes, into one folder, everything a self-training run needs when the user has
no model of their own: an unlabelled query pool (`queries.jsonl`) and, apart, its labels
(`answers.jsonl`: for the label-using controls and the audit only), a labelled held-out set
(`test.jsonl`), and a char-level Llama in HF format (`model/`) pre-trained on gold solutions
of *other* problems, so later stages load it like any hub model. The pre-training is pinned
by seed and step count: a prototype of the task measured 35.8% greedy at 900 steps and 96.3% (no headroom
left for self-training) at 1,500, so wall time must not decide when it stops.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import tempfile
import time
from pathlib import Path

import torch
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

from genius.config import ToyConfig
from genius.threads import torch_threads
from genius.toy import task
from genius.toy.tokenizer import build_tokenizer

MAX_POSITIONS = 128  # longest prompt + response is ~60 tokens (5 numbers, total <= 99)
WARMUP_STEPS = 50
FINAL_LR_FRACTION = 0.1  # cosine decays to 10% of the peak, not to 0
LOG_EVERY = 100


def build_toy(cfg: ToyConfig, out_dir: str | Path, log=print) -> Path:
    """Write queries.jsonl, answers.jsonl (the pool's labels), test.jsonl, model/ and toy.json into `out_dir`; return it.

    Everything is built in a temporary folder next to `out_dir` and renamed into place at
    the end, so an interrupted build never leaves a folder that looks complete.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building-", dir=out_dir.parent))
    tmp.chmod(0o755)  # mkdtemp makes it owner-only; the result is an ordinary shared folder
    try:
        start = time.perf_counter()
        pool, test = task.generate_splits(cfg.seed, cfg.num_queries, cfg.num_test)
        _write_jsonl(tmp / "queries.jsonl", [{"id": f"q{i:05d}", "query": p.query} for i, p in enumerate(pool)])
        # the pool's labels: read only by the label-using controls (method.answers_path) and the audit, never by training
        _write_jsonl(tmp / "answers.jsonl", [{"id": f"q{i:05d}", "answer": str(p.answer)} for i, p in enumerate(pool)])
        _write_jsonl(
            tmp / "test.jsonl", [{"id": f"t{i:05d}", "query": p.query, "answer": str(p.answer)} for i, p in enumerate(test)]
        )
        tokenizer = build_tokenizer()
        # Pre-training problems must not be reorderings of pool or test problems: the pool is
        # what self-training claims to learn from without labels, the test set what it is
        # judged on.
        excluded = {tuple(sorted(p.numbers)) for p in pool + test}
        model, final_loss = pretrain(cfg, tokenizer, excluded, log)
        model.generation_config = GenerationConfig(
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
        )
        model.save_pretrained(tmp / "model")  # safetensors is the default format
        tokenizer.save_pretrained(tmp / "model")
        wall = time.perf_counter() - start
        info = {
            "config": cfg.model_copy(update={"out_dir": str(out_dir)}).model_dump(),  # where it really went
            "num_parameters": sum(p.numel() for p in model.parameters()),
            "final_loss": final_loss,
            "wall_seconds": round(wall, 1),
        }
        (tmp / "toy.json").write_text(json.dumps(info, indent=2) + "\n")
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"toy built in {wall:.0f}s: {info['num_parameters']:,} parameters -> {out_dir}")
    return out_dir


def pretrain(cfg: ToyConfig, tokenizer, excluded: set[tuple[int, ...]], log=print) -> tuple[LlamaForCausalLM, float]:
    """Train a fresh tiny Llama for exactly `cfg.pretrain_steps` steps; return it and its last loss."""
    with torch_threads(cfg.threads):
        torch.manual_seed(cfg.seed)
        model = LlamaForCausalLM(
            LlamaConfig(
                vocab_size=len(tokenizer),
                hidden_size=cfg.hidden_size,
                intermediate_size=3 * cfg.hidden_size,
                num_hidden_layers=cfg.num_layers,
                num_attention_heads=cfg.num_heads,
                num_key_value_heads=cfg.num_heads,
                max_position_embeddings=MAX_POSITIONS,
                tie_word_embeddings=True,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate)
        # A short run (tests) gets a proportionally short warm-up instead of never reaching the peak.
        warmup = min(WARMUP_STEPS, max(1, cfg.pretrain_steps // 10))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, warmup, cfg.pretrain_steps))
        rng = random.Random(f"toy-pretrain-{cfg.seed}")  # its own stream: the splits use random.Random(seed)
        model.train()
        start, loss = time.perf_counter(), torch.tensor(float("nan"))
        for step in range(1, cfg.pretrain_steps + 1):
            batch = _training_batch(tokenizer, rng, excluded, cfg.batch_size)
            loss = model(**batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if step % LOG_EVERY == 0 or step == cfg.pretrain_steps:
                log(f"pretrain step {step}/{cfg.pretrain_steps} loss {loss.item():.4f} {time.perf_counter() - start:.0f}s")
        model.eval()
        return model, loss.item()


def _lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up to 1, then cosine from 1 down to FINAL_LR_FRACTION at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress))


def _training_batch(tokenizer, rng: random.Random, excluded: set, size: int) -> dict[str, torch.Tensor]:
    """Fresh problems with gold solutions, right-padded; labels are -100 on prompt and padding.

    Returns input_ids, attention_mask and labels, each (size, longest sequence).
    """
    problems = []
    while len(problems) < size:
        p = task.sample_problem(rng)
        if tuple(sorted(p.numbers)) not in excluded:
            problems.append(p)
    prompts = [[{"role": "user", "content": p.query}] for p in problems]
    chats = [prompt + [{"role": "assistant", "content": task.solve(p, rng)}] for prompt, p in zip(prompts, problems)]
    # The exact ids later stages will see: the chat template renders BOS, `Q:`, the query, EOS.
    full = tokenizer.apply_chat_template(chats, tokenize=True, return_dict=False)
    prompt_lens = [len(ids) for ids in tokenizer.apply_chat_template(prompts, tokenize=True, return_dict=False)]
    width = max(map(len, full))
    input_ids = torch.full((size, width), tokenizer.pad_token_id)
    attention_mask = torch.zeros((size, width), dtype=torch.long)
    labels = torch.full((size, width), -100)
    for i, (ids, n_prompt) in enumerate(zip(full, prompt_lens)):
        # Right padding keeps position ids 0..n for every row without passing them in.
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention_mask[i, : len(ids)] = 1
        labels[i, n_prompt : len(ids)] = input_ids[i, n_prompt : len(ids)]  # response + EOS only
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def _replace_dir(new: Path, target: Path) -> None:
    """Rename `new` to `target`; an existing `target` is moved aside first, then deleted."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        target.rename(old / target.name)
    new.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
