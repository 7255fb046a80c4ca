"""A seconds-scale model and pairs for the training tests: no pre-training, no sampling."""

from __future__ import annotations

import random
from pathlib import Path

from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

from genius.algorithm.records import PreferencePair
from genius.toy import task
from genius.toy.tokenizer import build_tokenizer


def tiny_model(folder: Path, seed: int = 0) -> str:
    """A randomly initialised 2-layer Llama with the toy's char tokenizer, saved in HF format."""
    import torch

    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def memorized_model(folder: Path, pairs: list[PreferencePair], steps: int = 150, seed: int = 0) -> str:
    """`tiny_model` over-fitted (full fine-tuning, lr 1e-2) on the chosen responses of `pairs`:
    greedy decoding then solves those queries and mostly fails others. ~3 s on one thread."""
    import torch

    tiny_model(folder, seed)
    tokenizer = build_tokenizer()
    model = LlamaForCausalLM.from_pretrained(folder)
    chats = [[{"role": "user", "content": p.query}, {"role": "assistant", "content": p.chosen}] for p in pairs]
    batch = tokenizer(tokenizer.apply_chat_template(chats, tokenize=False), return_tensors="pt", padding=True)
    labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.save_pretrained(folder)
    return str(folder)


def greedy_responses(model_dir, queries: list[str], max_new_tokens: int = 64) -> list[str]:
    """Plain HF greedy generation, one prompt at a time, with no lm-eval and no chat template
    code: the prompt written out by hand, the response cut at the toy task's stop string "Q:"."""
    import torch

    tokenizer = build_tokenizer()
    model = LlamaForCausalLM.from_pretrained(model_dir).eval()
    responses = []
    for query in queries:
        ids = tokenizer(f"<bos>Q:{query}\n", return_tensors="pt").input_ids
        with torch.no_grad():
            out = model.generate(
                ids,
                do_sample=False,
                max_new_tokens=max_new_tokens,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        responses.append(tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).split("Q:")[0])
    return responses


def synthetic_pairs(n: int, seed: int = 0) -> list[PreferencePair]:
    """Toy pairs: a gold solution against one with a wrong last sum; random advantages, some
    with A_l > A_w so ACO's calibration region is exercised (cross-beam pairs of timestamp 2;
    training does not read the scores)."""
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        problem = task.sample_problem(rng)
        chosen = task.solve(problem, rng)
        rejected = chosen[: chosen.rindex(":") + 1] + str(problem.answer + rng.randint(1, 9))
        complete = rng.random() < 0.8
        adv_chosen, adv_rejected = rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.8)
        pairs.append(
            PreferencePair(
                query_id=f"s{i}",
                query=problem.query,
                timestamp=2,
                chosen=chosen,
                rejected=rejected if complete else rejected[:-2],
                chosen_complete=True,
                rejected_complete=complete,
                score_chosen=-1.0,
                score_rejected=-1.1,
                adv_chosen=adv_chosen,
                adv_rejected=adv_rejected,
                same_beam=False,
            )
        )
    return pairs


def run_until_killed(code: str, kill_at: int, env: dict, timeout: float) -> list[int]:
    """Run `python -c code`, which prints `STEP n` per optimizer step, and SIGKILL it at step `kill_at`.

    Returns the steps seen; the caller asserts the kill landed where it meant it to.
    """
    import signal
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    seen: list[int] = []
    for line in child.stdout:
        if line.startswith("STEP "):
            seen.append(int(line.split()[1]))
            if seen[-1] == kill_at:
                child.send_signal(signal.SIGKILL)
                break
    child.wait(timeout=timeout)
    assert child.returncode == -signal.SIGKILL and seen and seen[-1] == kill_at, seen
    return seen


def lora_round(parent: str, out: Path, rank: int, seed: int = 0, std: float = 0.3) -> str:
    """A LoRA round on `parent` as training saves one (adapter and lineage file, genius/engines/lineage.py),
    its B drawn at random (peft starts it at zero) so that it changes the policy."""
    import torch
    from peft import LoraConfig, get_peft_model

    from genius.engines.lineage import lineage_record, write_lineage
    from genius.engines.loading import load_model

    torch.manual_seed(seed)
    record = lineage_record(parent)
    model, _ = load_model(parent, device="cpu")
    lora = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules="all-linear"))
    for name, p in lora.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=std)
    lora.save_pretrained(out)
    write_lineage(out, record)
    return str(out)
