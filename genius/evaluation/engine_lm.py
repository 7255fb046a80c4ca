"""lm-eval's HF model with its generation on the transformers engine (`eval.engine: hf`).

HFLM generates a fixed batch (`eval.batch_size`) at a time with HF `generate`: every row of a
batch runs until its longest one ends, and the next batch waits. `EngineLM.generate_until`
hands all of a task's prompts to `TransformersEngine` in one call instead, which batches them by
length and drops a row as soon as it ends (genius/engines/transformers_engine.py), as it does for
foresight sampling. Everything else (log-likelihoods, tokenization, truncation, the stop strings'
post-processing, the cache hook) is HFLM's own.

The engine draws plain greedy or plain temperature samples, so only such requests take it
(`plain_temperature`); any other (top-k or top-p cut-offs, a repetition penalty, beams, ...)
goes to HFLM's `generate_until` unchanged.
"""

from __future__ import annotations

from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text
from tqdm import tqdm

from genius.engines.transformers_engine import TransformersEngine

# What HF `generate` would apply beyond greedy or temperature sampling, with its no-op values:
# these must all be no-ops, from the request, else the model's generation config, else HF's defaults.
_NO_OPS = {
    "num_beams": (1,),
    "repetition_penalty": (1.0,),
    "no_repeat_ngram_size": (0,),
    "bad_words_ids": (None,),
    "suppress_tokens": (None,),
    "begin_suppress_tokens": (None,),
    "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,),
    "min_length": (0,),
    "min_new_tokens": (None, 0),
}
_SAMPLING_NO_OPS = {  # applied only when sampling
    "top_k": (0, None),
    "top_p": (1.0,),
    "min_p": (None, 0.0),
    "typical_p": (1.0,),
    "epsilon_cutoff": (0.0,),
    "eta_cutoff": (0.0,),
}

# HF's fill-ins for unset keys (`GenerationConfig._get_default_generation_params` in transformers 5)
_HF_DEFAULTS = {"top_k": 50, "top_p": 1.0, "typical_p": 1.0, "repetition_penalty": 1.0, "num_beams": 1, "min_length": 0}
_HF_DEFAULTS |= {"no_repeat_ngram_size": 0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0}


def plain_temperature(kwargs: dict, generation_config) -> float | None:
    """The temperature (0.0: greedy) when lm-eval's normalized generation kwargs (`until` and
    `max_gen_toks` popped) ask HF `generate` for plain greedy or temperature sampling, else None."""
    defaults = getattr(type(generation_config), "_get_default_generation_params", lambda: _HF_DEFAULTS)()
    config = {k: v for k, v in generation_config.to_dict().items() if v is not None}
    known = {"do_sample", "temperature", *_NO_OPS, *_SAMPLING_NO_OPS}
    if set(kwargs) - known:
        return None
    sampling = kwargs.get("do_sample", config.get("do_sample", False))
    temperature = float(kwargs.get("temperature", 0.0))  # what HFLM passes when a task sets none
    if sampling and temperature <= 0:
        return None  # HF `generate` refuses it: let it say so
    checks = _NO_OPS | (_SAMPLING_NO_OPS if sampling else {})
    for key, no_ops in checks.items():
        value = kwargs[key] if key in kwargs else config.get(key, defaults.get(key))
        if value not in no_ops:
            return None
    return temperature if sampling else 0.0


class EngineLM(HFLM):
    """HFLM (given a loaded model) whose plain generation requests run on `TransformersEngine`."""

    def __init__(self, *args, max_batch_sequences: int = 512, max_batch_tokens: int = 131072, **kwargs):
        super().__init__(*args, **kwargs)
        self.engine = TransformersEngine(self.model, self.tokenizer, max_batch_sequences, max_batch_tokens)

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        groups: dict[str, list[int]] = {}  # requests by their generation kwargs, as HFLM groups them
        for i, request in enumerate(requests):
            groups.setdefault(repr(sorted(request.args[1].items())), []).append(i)
        out: list[str | None] = [None] * len(requests)
        quiet = disable_tqdm or self.rank != 0
        pbar = tqdm(total=len(requests), disable=quiet, desc="Running generate_until requests")
        eos = self.tok_decode(self.eot_token_id, skip_special_tokens=False)
        for indices in groups.values():
            gen_kwargs = requests[indices[0]].args[1]
            kwargs = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
            max_gen_toks = kwargs.pop("max_gen_toks")
            temperature = plain_temperature(kwargs, self.model.generation_config)
            if temperature is None or self.backend != "causal" or isinstance(self.think_end_token, int):
                texts = super().generate_until([requests[i] for i in indices], disable_tqdm=True)  # caches its own
            else:
                texts = self._engine_generate([requests[i].args[0] for i in indices], temperature, max_gen_toks, until)
                for i, text in zip(indices, texts, strict=True):
                    self.cache_hook.add_partial("generate_until", requests[i].args, text)
            for i, text in zip(indices, texts, strict=True):
                out[i] = text
            pbar.update(len(indices))
        pbar.close()
        return out

    def _engine_generate(self, contexts: list[str], temperature: float, max_gen_toks: int, until: list[str]) -> list[str]:
        """One engine call for a group's contexts, encoded and left-truncated as HFLM encodes them."""
        room = self.max_length - max_gen_toks
        ids, mask = self.tok_batch_encode(list(contexts), left_truncate_len=room, truncation=self.truncation)
        prompts = [row[m.bool()].tolist() for row, m in zip(ids, mask)]
        completions = self.engine.generate(
            prompts, n=1, temperature=temperature, max_new_tokens=max_gen_toks, stop_strings=[s for s in until if s]
        )
        think = self.think_end_token if isinstance(self.think_end_token, str) else None
        return [postprocess_generated_text(self.tok_decode(c.token_ids), until, think) for (c,) in completions]
