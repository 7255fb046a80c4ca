"""Generation engines: the one interface foresight sampling calls, and its transformers backend.

An engine takes token-id prompts and returns, for each, `n` sampled continuations with the
policy's per-token log-probs (at temperature 1, whatever the sampling temperature: the
foresight score is a log-prob of the policy, not of the tempered sampler). Foresight
sampling makes one engine call per phase for a whole batch of queries (all candidate steps
of a timestamp, then all their rollouts); batching across queries is worth ~36x on the toy
(TOY-NOTES.md, Speed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

FinishReason = Literal["stop", "eos", "length"]


@dataclass
class Completion:
    token_ids: list[int]  # generated tokens, the EOS token included when one was generated
    logprobs: list[float]  # log pi(token | context), one per token
    finish_reason: FinishReason  # stop: a token containing the step delimiter; eos; length


class Engine(Protocol):
    def generate(
        self, prompts: list[list[int]], *, n: int, temperature: float, max_new_tokens: int, stop: str | None
    ) -> list[list[Completion]]:
        """`n` completions per prompt; generation ends at EOS, at `stop`, or at the limit."""
        ...


def load_model(path: str, dtype: str = "float32", device: str = "auto", trust_remote_code: bool = False):
    """(model, tokenizer) from an HF folder or hub name, safetensors only, no remote code by default."""
    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code, use_safetensors=True
    )
    return model.to(device).eval(), tokenizer


class TransformersEngine:
    """Batched ancestral sampling with a KV cache, in plain torch over an HF causal LM.

    Prompts of a call are sorted by length and cut into batches of `max_batch_sequences`;
    rows that finish are dropped from the batch (and its cache) so short steps do not pay
    for long ones.
    """

    def __init__(self, model, tokenizer, max_batch_sequences: int = 512):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_batch_sequences = max_batch_sequences
        eos = model.generation_config.eos_token_id
        eos = eos if eos is not None else tokenizer.eos_token_id
        self.eos_ids = torch.tensor(eos if isinstance(eos, list) else [eos], device=model.device)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else int(self.eos_ids[0])
        self._stop_masks: dict[str, torch.Tensor] = {}
        self.calls = 0
        self.generated_tokens = 0

    def generate(self, prompts, *, n, temperature, max_new_tokens, stop=None):
        flat = [p for p in prompts for _ in range(n)]
        order = sorted(range(len(flat)), key=lambda i: len(flat[i]))  # less padding per batch
        results: list[Completion | None] = [None] * len(flat)
        for start in range(0, len(flat), self.max_batch_sequences):
            rows = order[start : start + self.max_batch_sequences]
            for i, c in zip(rows, self._sample([flat[i] for i in rows], temperature, max_new_tokens, stop)):
                results[i] = c
        self.calls += 1
        self.generated_tokens += sum(len(c.token_ids) for c in results)
        return [results[i * n : (i + 1) * n] for i in range(len(prompts))]

    def _stop_mask(self, stop: str) -> torch.Tensor:
        """Vocabulary mask of tokens whose text contains `stop` (a step ends on such a token)."""
        if stop not in self._stop_masks:
            vocab = len(self.tokenizer)
            texts = self.tokenizer.batch_decode([[i] for i in range(vocab)])
            mask = torch.tensor([stop in t for t in texts], device=self.model.device)
            size = self.model.get_output_embeddings().weight.shape[0]  # may exceed len(tokenizer)
            self._stop_masks[stop] = torch.nn.functional.pad(mask, (0, max(0, size - vocab)))
        return self._stop_masks[stop]

    @torch.no_grad()
    def _sample(self, prompts, temperature, max_new_tokens, stop) -> list[Completion]:
        device, batch = self.model.device, len(prompts)
        width = max(len(p) for p in prompts)
        input_ids = torch.full((batch, width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((batch, width), dtype=torch.long)
        for i, p in enumerate(prompts):  # left padding: every row's next token is at the end
            input_ids[i, width - len(p) :] = torch.tensor(p)
            attention[i, width - len(p) :] = 1
        input_ids, attention = input_ids.to(device), attention.to(device)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        logits = self.model(
            input_ids=input_ids, attention_mask=attention, position_ids=positions, cache=cache
        ).logits[:, -1].float()
        next_pos = positions[:, -1] + 1
        stop_mask = self._stop_mask(stop) if stop else None

        tokens: list[list[int]] = [[] for _ in range(batch)]
        logps: list[list[float]] = [[] for _ in range(batch)]
        reasons: list[FinishReason] = ["length"] * batch
        alive = torch.arange(batch, device=device)  # original row of each row still in the batch
        for _ in range(max_new_tokens):
            logp = torch.log_softmax(logits, dim=-1)
            if temperature > 0:
                tok = torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1).squeeze(1)
            else:
                tok = logits.argmax(-1)
            lp = logp.gather(1, tok[:, None]).squeeze(1)
            is_eos = torch.isin(tok, self.eos_ids)
            is_stop = stop_mask[tok] & ~is_eos if stop_mask is not None else torch.zeros_like(is_eos)
            for row, t, l, e, s in zip(alive.tolist(), tok.tolist(), lp.tolist(), is_eos.tolist(), is_stop.tolist()):
                tokens[row].append(t)
                logps[row].append(l)
                if e or s:
                    reasons[row] = "eos" if e else "stop"
            keep = ~(is_eos | is_stop)
            if not keep.any():
                break
            if not keep.all():  # drop finished rows from the batch and the cache
                idx = keep.nonzero().squeeze(1)
                cache.batch_select_indices(idx)
                alive, tok, attention, next_pos = alive[idx], tok[idx], attention[idx], next_pos[idx]
            attention = torch.cat([attention, attention.new_ones((len(alive), 1))], dim=1)
            logits = self.model(
                input_ids=tok[:, None], attention_mask=attention, position_ids=next_pos[:, None], cache=cache
            ).logits[:, -1].float()
            next_pos = next_pos + 1
        return [Completion(t, l, r) for t, l, r in zip(tokens, logps, reasons)]
