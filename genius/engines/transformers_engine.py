"""The transformers backend of the engine interface (`genius.engines.base`): plain torch over an HF causal LM.

Foresight sampling makes one engine call per timestamp for a whole batch of queries: every
candidate step, each continued to the end of the response by its rollout (`then`), so the
rollout reuses the step's KV cache instead of re-encoding prompt + prefix + step. Batching
across queries is worth ~36x on the toy (measured with HF `generate` on one thread: 689
tokens/s at batch 1, 24.8K at 128). The vLLM backend lives in `genius.engines.vllm_engine`;
`genius.engines.build_engine` picks one, `genius.engines.loading` loads the model.
"""
from __future__ import annotations

import torch
from transformers import DynamicCache

from genius.engines.base import Completion, EngineCost, FinishReason, inverse_cdf_sample, stop_token_mask

_LENGTH, _STOP, _EOS = 0, 1, 2  # finish codes inside the decode loop
_REASONS: tuple[FinishReason, ...] = ("length", "stop", "eos")


def eos_ids(model, tokenizer) -> list[int]:
    """The token ids that end a response: the generation config's, else the tokenizer's."""
    eos = model.generation_config.eos_token_id
    eos = eos if eos is not None else tokenizer.eos_token_id
    return list(eos) if isinstance(eos, (list, tuple)) else [eos]


def plan_batches(
    lengths: list[int], rows: list[int], max_new_tokens: int, max_sequences: int, max_tokens: int
) -> list[list[int]]:
    """Cut distinct prompts, shortest first, into batches under a row and a token budget.

    Prompt i has `lengths[i]` tokens and `rows[i]` samples to draw. A batch (left-padded to
    its longest prompt, W) keeps a KV cache of sum(rows) * (W + max_new_tokens) tokens:
    that is what `max_tokens` bounds, so long prompts get small batches and short ones
    large. A prompt too big for any budget still gets a batch of its own. Returns lists of
    indices into `lengths`.
    """
    batches: list[list[int]] = []
    current, current_rows = [], 0
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        total = current_rows + rows[i]
        if current and (total > max_sequences or total * (lengths[i] + max_new_tokens) > max_tokens):
            batches.append(current)
            current, current_rows, total = [], 0, rows[i]
        current.append(i)
        current_rows = total
    return batches + [current] if current else batches


class TransformersEngine:
    """Batched ancestral sampling with a KV cache, in plain torch over an HF causal LM.

    Each distinct prompt of a call is prefilled once and its cache copied to its rows (the
    N candidates of a beam share prompt + beam prefix); a continuation goes on in the same
    row, on the step's cache. Distinct prompts are sorted by length and cut into batches by
    `plan_batches`; rows that finish are dropped from the batch (and its cache) so short
    responses do not pay for long ones.
    """

    def __init__(self, model, tokenizer, max_batch_sequences: int = 512, max_batch_tokens: int = 131072):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_batch_sequences, self.max_batch_tokens = max_batch_sequences, max_batch_tokens
        self.eos_ids = torch.tensor(eos_ids(model, tokenizer), device=model.device)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else int(self.eos_ids[0])
        self._stop_masks: dict[str, torch.Tensor] = {}
        self.cost = EngineCost()
        self.num_parameters = sum(p.numel() for p in model.parameters())
        self.compact_fraction = 0.25  # see _sample: lazier compaction measured 12% faster on the toy

    def generate(self, prompts, *, n, temperature, max_new_tokens, stop=None, then=None, stop_strings=()):
        """The engine interface's call (genius.engines.base); `stop_strings` (without `then`): end a
        row, as `stop` does, once its decoded text contains one of them, as lm-eval's `until`
        (genius.evaluation.engine_lm). `stop` matches a token; these match text across tokens."""
        if stop_strings and then:
            raise ValueError("stop_strings end a whole response: they do not go with `then`")
        # Two beams can hold the same prefix; each still gets its own n samples, so a prompt
        # seen k times is prefilled once and sampled k * n times.
        where: dict[tuple[int, ...], list[int]] = {}
        for i, p in enumerate(prompts):
            where.setdefault(tuple(p), []).append(i)
        distinct = list(where)
        rows = [len(where[p]) * n for p in distinct]
        out: list[list[Completion]] = [[] for _ in prompts]
        new_tokens = max_new_tokens + (then.max_new_tokens if then else 0)
        budget = (self.max_batch_sequences, self.max_batch_tokens)
        for batch in plan_batches([len(p) for p in distinct], rows, new_tokens, *budget):
            group, copies = [distinct[i] for i in batch], [rows[i] for i in batch]
            samples = iter(self._sample(group, copies, temperature, max_new_tokens, stop, then, stop_strings))
            for i in batch:
                for position in where[distinct[i]]:
                    out[position] = [next(samples) for _ in range(n)]
        self.cost.calls += 1
        self.cost.prefill_tokens += sum(len(p) for p in distinct)
        self.cost.generated_tokens += sum(
            len(c.token_ids) + (len(c.continuation.token_ids) if c.continuation else 0) for cs in out for c in cs
        )
        return out

    def _stop_mask(self, stop: str) -> torch.Tensor:
        if stop not in self._stop_masks:
            size = self.model.get_output_embeddings().weight.shape[0]
            self._stop_masks[stop] = stop_token_mask(self.tokenizer, stop, size).to(self.model.device)
        return self._stop_masks[stop]

    @torch.inference_mode()  # lighter than no_grad: measured 5% on the toy's sampling
    def _prefill(self, prompts: list[tuple[int, ...]], copies: list[int]):
        """Run each distinct prompt once and copy its cache to its rows.

        Returns (cache, last logits (B, V), attention mask (B, W), next positions (B,)),
        B = sum(copies) rows, prompt-major; W = the longest prompt (left padding, so every
        row's next token goes in the same column).
        """
        device, distinct = self.model.device, len(prompts)
        width = max(len(p) for p in prompts)
        input_ids = torch.full((distinct, width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((distinct, width), dtype=torch.long)
        for i, p in enumerate(prompts):
            input_ids[i, width - len(p) :] = torch.tensor(p)
            attention[i, width - len(p) :] = 1
        input_ids, attention = input_ids.to(device), attention.to(device)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        logits = self.model(  # logits_to_keep: only the last position's, not (D, W, V)
            input_ids=input_ids, attention_mask=attention, position_ids=positions, cache=cache, logits_to_keep=1
        ).logits[:, -1].float()
        if cache.get_seq_length() != width:  # a model that ignored the cache would sample without context
            raise RuntimeError(
                f"{type(self.model).__name__} did not fill the KV cache passed as `cache=` "
                "(transformers < 5.24 calls it past_key_values; pyproject.toml asks for >= 5.24)"
            )
        if sum(copies) > distinct:  # a shared prompt: copy its cache instead of re-encoding it
            rows = torch.repeat_interleave(torch.arange(distinct, device=device), torch.tensor(copies, device=device))
            cache.batch_select_indices(rows)  # an index gather, (D, ...) -> (B, ...)
            logits, attention, positions = logits[rows], attention[rows], positions[rows]
        return cache, logits, attention, positions[:, -1] + 1

    def _has_stop_string(self, tail: torch.Tensor, stop_strings) -> torch.Tensor:
        """(A,) bool: whether the text of each row's last tokens (A, lookback) holds a stop
        string; special tokens decoded, as lm-eval's own stop criterion reads them."""
        texts = self.tokenizer.batch_decode(tail.tolist(), skip_special_tokens=False)
        return torch.tensor([any(s in text for s in stop_strings) for text in texts])

    @torch.inference_mode()
    def _sample(self, prompts, copies, temperature, max_new_tokens, stop, then, stop_strings=()) -> list[Completion]:
        """copies[j] samples of each distinct prompt j, prompt-major (prompt 0's first).

        Every row samples the step phase (at `temperature`, until `stop`, EOS or
        `max_new_tokens`), then, with `then` and no EOS, the continuation phase in the same
        row (at `then.temperature`, until EOS or `then.max_new_tokens`).
        Shapes: B = sum(copies) rows, A = rows still alive, T = tokens of both phases.
        """
        device = self.model.device
        total = max_new_tokens + (then.max_new_tokens if then else 0)
        cache, logits, attention, next_pos = self._prefill(prompts, copies)
        self.cost.steps += 1
        batch = sum(copies)
        stop_mask = self._stop_mask(stop) if stop else None
        # a stop string spans at most its own tokens, plus two for the tokens it may straddle
        lookback = max((len(self.tokenizer.encode(s, add_special_tokens=False)) + 2 for s in stop_strings), default=0)

        # one spare row, `batch`: rows that finished but are still in the batch write there
        out_tokens = torch.full((batch + 1, total), self.pad_id, dtype=torch.long, device=device)  # (B+1, T)
        out_logps = torch.zeros((batch + 1, total), device=device)
        length = torch.zeros(batch + 1, dtype=torch.long, device=device)  # both phases
        step_length = torch.zeros(batch + 1, dtype=torch.long, device=device)
        step_reason = torch.full((batch + 1,), _LENGTH, dtype=torch.long, device=device)
        cont_reason = torch.full((batch + 1,), _LENGTH, dtype=torch.long, device=device)
        alive = torch.arange(batch, device=device)  # (A,) original row of each row in the batch
        in_cont = torch.zeros(batch, dtype=torch.bool, device=device)  # (A,) in the continuation phase
        count = torch.zeros(batch, dtype=torch.long, device=device)  # (A,) tokens in the current phase
        temps = torch.full((batch,), float(temperature), device=device)  # (A,)
        cont_limit = then.max_new_tokens if then else 0
        for t in range(total):
            logp = torch.log_softmax(logits, dim=-1)  # the policy's own log-probs, untempered
            tok = _draw(logits, temps)
            out_tokens[alive, t] = tok
            out_logps[alive, t] = logp.gather(1, tok[:, None]).squeeze(1)
            length[alive] = t + 1
            count = count + 1
            is_eos = torch.isin(tok, self.eos_ids)
            is_stop = stop_mask[tok] & ~is_eos if stop_mask is not None else torch.zeros_like(is_eos)
            if lookback:
                tail = out_tokens[alive, max(0, t + 1 - lookback) : t + 1]
                is_stop |= self._has_stop_string(tail, stop_strings).to(device) & ~is_eos
            step_ends = ~in_cont & (is_eos | is_stop | (count == max_new_tokens))
            cont_ends = in_cont & (is_eos | (count == cont_limit))
            step_length[alive[step_ends]] = t + 1
            step_reason[alive[step_ends]] = torch.where(is_eos, _EOS, torch.where(is_stop, _STOP, _LENGTH))[step_ends]
            cont_reason[alive[cont_ends]] = torch.where(is_eos[cont_ends], _EOS, _LENGTH)
            switch = step_ends & ~is_eos if then else torch.zeros_like(step_ends)
            in_cont, count = in_cont | switch, torch.where(switch, 0, count)
            if then:
                temps = torch.where(switch, float(then.temperature), temps)
            alive = torch.where(cont_ends | (step_ends & ~switch), batch, alive)
            live = alive != batch
            if not live.any():
                break
            # Dropping finished rows copies the whole cache: do it once a quarter of the
            # batch is dead, not at every finished row; until then dead rows cost compute only.
            if (~live).sum() > self.compact_fraction * len(live):
                idx = live.nonzero().squeeze(1)
                cache.batch_select_indices(idx)
                alive, tok, attention, next_pos = alive[idx], tok[idx], attention[idx], next_pos[idx]
                in_cont, count, temps = in_cont[idx], count[idx], temps[idx]
            attention = torch.cat([attention, attention.new_ones((len(alive), 1))], dim=1)
            logits = self.model(
                input_ids=tok[:, None], attention_mask=attention, position_ids=next_pos[:, None], cache=cache
            ).logits[:, -1].float()
            self.cost.steps += 1
            next_pos = next_pos + 1
        outputs = (out_tokens, out_logps, length, step_length, step_reason, cont_reason)
        return _completions(*(x[:batch] for x in outputs), then is not None)


def _draw(logits: torch.Tensor, temps: torch.Tensor) -> torch.Tensor:
    """One token per row: sampled from softmax(logits / T), argmax where T = 0. (A, V), (A,) -> (A,).

    By inverse CDF, one uniform a row (`inverse_cdf_sample`): `torch.multinomial` draws
    exponential noise over the whole vocabulary, a quarter of a SmolLM2 decode step's time at 128
    rows; the inverse CDF costs a third of it (bench/engine_draw.py).
    """
    if not (temps > 0).any():
        return logits.argmax(-1)
    tok = inverse_cdf_sample(torch.softmax(logits / temps.clamp(min=1e-6)[:, None], dim=-1), {})
    return tok if (temps > 0).all() else torch.where(temps > 0, tok, logits.argmax(-1))


def _completions(tokens, logps, length, step_length, step_reason, cont_reason, continued) -> list[Completion]:
    """Split each row's tokens (B, T) into its step and, when it went on, its continuation."""
    tokens, logps = tokens.tolist(), logps.tolist()
    out = []
    rows = zip(length.tolist(), step_length.tolist(), step_reason.tolist(), cont_reason.tolist())
    for row, (n, k, sr, cr) in enumerate(rows):
        step = Completion(tokens[row][:k], logps[row][:k], _REASONS[sr])
        if continued and sr != _EOS:
            step.continuation = Completion(tokens[row][k:n], logps[row][k:n], _REASONS[cr])
        out.append(step)
    return out
