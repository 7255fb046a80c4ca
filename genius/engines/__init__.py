"""Generation engines: the interface (`base`), its backends (`transformers_engine`,
`vllm_engine`), model loading (`loading`) and GGUF import (`gguf`).

Importing this package imports nothing heavy: `build_engine` imports the backend it needs
when called (vLLM itself only inside `VLLMEngine`), so `genius import-model` and the
interface's users never pay for torch models or vLLM they do not use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from genius.engines.base import Engine


def build_engine(path: str, sampling, model) -> tuple[Engine, object]:
    """(engine, tokenizer) for the policy at `path`, as `sampling.engine` names it.

    `sampling` is a SamplingConfig, `model` a ModelConfig (dtype, device, remote code).
    """
    from genius.engines.loading import check_model, load_model

    check_model(path)
    if sampling.engine == "vllm":
        from genius.engines.vllm_engine import VLLMEngine  # vllm itself is imported inside the class

        engine = VLLMEngine.from_config(path, sampling, model)
        return engine, engine.tokenizer
    from genius.engines.transformers_engine import TransformersEngine

    policy, tokenizer = load_model(path, model.dtype, model.device, model.trust_remote_code)
    return TransformersEngine(policy, tokenizer, sampling.max_batch_sequences, sampling.max_batch_tokens), tokenizer
