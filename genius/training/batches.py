"""From preference pairs to token batches, and from a batch to the responses' log-probs.

A pair is one row, [prompt | chosen | rejected]: its prompt is computed once for both
responses, each of which sees only the prompt and itself (`collate_pairs`), as in prefix
sharing for DPO (Wang and Hegde, 2024). The log-probs equal those of each sequence alone to fp32
rounding (tests/test_train.py); a model's attention must take a custom 4D mask (SDPA, eager).

A global batch is `training.batch_size` pairs per optimizer step whatever the hardware:
each process takes its share and cuts it into micro-batches, each run forward and backward
on its own, so the learning-rate schedule and the maths do not change with the number of
GPUs or with `gradient_accumulation_steps`. Micro-batches hold pairs of similar length: a
batch padded to its longest sequence wastes ~30% of the positions on the toy's pairs (more
on real responses, whose lengths vary tenfold), and each holds only its own activations.
The data order is a pure function of (seed, epoch): a resumed run replays it exactly.
"""

from __future__ import annotations

import random
from typing import NamedTuple

import torch

from genius.algorithm.records import PreferencePair
from genius.algorithm.sampling import prompt_ids

Example = tuple[list[int], list[int], list[int]]  # (prompt, chosen, rejected) token ids


def tokenize_pairs(tokenizer, pairs: list[PreferencePair]) -> list[Example]:
    """(prompt, chosen, rejected) token ids; a complete response ends with EOS."""
    eos = [tokenizer.eos_token_id]

    def response(text: str, complete: bool) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"] + (eos if complete else [])

    return [
        (
            prompt_ids(tokenizer, p.query),
            response(p.chosen, p.chosen_complete),
            response(p.rejected, p.rejected_complete),
        )
        for p in pairs
    ]


def step_batches(num_pairs: int, batch_size: int, epochs: int, seed: int) -> list[list[int]]:
    """Pair indices of every optimizer step in order, (total_steps,) lists of <= batch_size."""
    steps = []
    for epoch in range(epochs):
        order = list(range(num_pairs))
        random.Random(f"{seed}:{epoch}").shuffle(order)  # str seeds hash deterministically
        steps += [order[b : b + batch_size] for b in range(0, num_pairs, batch_size)]
    return steps


def micro_batches(
    batch: list[int], examples: list[Example], num_processes: int, process_index: int, count: int
) -> list[list[int]]:
    """This process's share of a global batch, sorted by length and cut into `count` micro-batches.

    Shares differ by at most one pair, micro-batches too. A micro-batch is empty when the
    share holds fewer than `count` pairs (the end of an epoch); the caller still runs it,
    with weight 0, because sharded backends need every process to run every micro-step.
    """
    mine = sorted(batch[process_index::num_processes], key=lambda i: pair_width(examples[i]))
    sizes = [len(mine) // count + (k < len(mine) % count) for k in range(count)]
    starts = [sum(sizes[:k]) for k in range(count)]
    return [mine[a : a + n] for a, n in zip(starts, sizes)]


def pair_width(example: Example) -> int:
    """Tokens of a pair's packed row (`collate_pairs`): its prompt once, then both responses."""
    prompt, chosen, rejected = example
    return len(prompt) + len(chosen) + len(rejected)


def sequence_tokens(examples: list[Example]) -> int:
    """Tokens of the pairs' chosen and rejected sequences, each with its prompt: the unit of the
    trainers' tokens/s (TRL's too), though a packed row computes the prompt once."""
    return sum(2 * len(p) + len(c) + len(r) for p, c, r in examples)


def collate(sequences: list[tuple[list[int], list[int]]], pad_id: int, device) -> tuple[torch.Tensor, ...]:
    """Right-padded (input_ids, attention_mask, response_mask), each (B, L), from (prompt, response)."""
    width = max(len(p) + len(r) for p, r in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention = torch.zeros_like(ids)
    response = torch.zeros_like(ids)
    for i, (p, r) in enumerate(sequences):
        ids[i, : len(p) + len(r)] = torch.tensor(p + r)
        attention[i, : len(p) + len(r)] = 1
        response[i, len(p) : len(p) + len(r)] = 1
    return ids.to(device), attention.to(device), response.to(device)


class PairBatch(NamedTuple):
    """B pairs packed one per row, [prompt | chosen | rejected | padding], each field (B, L) but `allowed`."""

    ids: torch.Tensor
    positions: torch.Tensor  # the rejected response's positions restart where the prompt ends
    allowed: torch.Tensor  # (B, 1, L, L) bool: may query position i attend to key position j
    source: torch.Tensor  # the position whose logit predicts each token
    chosen: torch.Tensor  # 1 at the chosen response's tokens
    rejected: torch.Tensor  # 1 at the rejected response's tokens


def collate_pairs(examples: list[Example], pad_id: int, device) -> PairBatch:
    """One row per pair: the prompt is computed once for both responses.

    Each response sees exactly the sequence it would see alone: its tokens attend to the
    prompt and to its own earlier tokens (never to the other response), and the rejected
    response's positions restart where the prompt ends. Its first token is predicted from the
    prompt's last position; every other token from the position before it. Padding attends
    to itself only (no row of the mask is empty). The preset's SmolLM2 pairs' sequences are
    41% prompt: their rows hold 21% fewer tokens, and no padding between a pair's responses.
    """
    width = max(pair_width(e) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    positions = torch.zeros_like(ids)
    segment = torch.full_like(ids, -1)  # 0 prompt, 1 chosen, 2 rejected, -1 padding
    source = torch.arange(-1, width - 1).repeat(len(examples), 1)
    for i, (p, c, r) in enumerate(examples):
        end_p, end_c, end_r = len(p), len(p) + len(c), len(p) + len(c) + len(r)
        ids[i, :end_r] = torch.tensor(p + c + r)
        positions[i, :end_r] = torch.tensor([*range(end_c), *range(end_p, end_p + len(r))])
        segment[i, :end_p], segment[i, end_p:end_c], segment[i, end_c:end_r] = 0, 1, 2
        if r:
            source[i, end_c] = end_p - 1
    query, key = segment[:, :, None], segment[:, None, :]
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    allowed = (causal & (query >= 0) & (key >= 0) & ((key == 0) | (key == query))) | torch.eye(width, dtype=torch.bool)
    chosen, rejected = (segment == 1).long(), (segment == 2).long()
    fields = (ids, positions, allowed[:, None], source, chosen, rejected)
    return PairBatch(*(t.to(device) for t in fields))


def pair_logps(model, batch: PairBatch) -> tuple[torch.Tensor, ...]:
    """Summed log pi(response | prompt) of (chosen, rejected), and their lengths in tokens, each (B,).

    log p(token) = logit[token] - logsumexp(logits): unlike log_softmax it keeps no second
    (B, L, vocab) tensor for the backward pass. No KV cache: nothing is generated. Logits
    are computed from the batch's first predicting position on (`logits_to_keep`): the
    prompts' other positions need none.
    """
    ids, response = batch.ids, batch.chosen + batch.rejected
    first = int(batch.source.masked_fill(response == 0, ids.shape[1] - 1).min())  # the first logit read
    logits = model(
        input_ids=ids, attention_mask=_attention_mask(model, batch.allowed), position_ids=batch.positions,
        use_cache=False, logits_to_keep=ids.shape[1] - first,
    ).logits  # fmt: skip
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bf16 logits lose the log-prob's digits
    kept = logits.shape[1]
    rows = torch.arange(len(ids), device=ids.device)[:, None] * kept + (batch.source - first).clamp(min=0)
    flat = logits.flatten(0, 1)
    token_logps = flat[rows, ids] - torch.logsumexp(logits, -1).flatten()[rows]  # (B, L): a token's log-prob
    chosen, rejected = batch.chosen.float(), batch.rejected.float()
    return (token_logps * chosen).sum(-1), (token_logps * rejected).sum(-1), chosen.sum(-1), rejected.sum(-1)


def _attention_mask(model, allowed: torch.Tensor) -> torch.Tensor:
    """`allowed` as the model's attention takes a custom 4D mask: boolean for SDPA, additive for eager."""
    implementation = getattr(model, "module", model).config._attn_implementation  # .module: DDP, FSDP
    if implementation == "sdpa":
        return allowed
    if implementation == "eager":
        return torch.zeros(allowed.shape, device=allowed.device).masked_fill(~allowed, torch.finfo(torch.float32).min)
    raise ValueError(f"attention {implementation!r} takes no custom 4D mask: pairs are packed for 'sdpa' or 'eager'")
