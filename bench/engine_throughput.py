"""Per-engine throughput of an 8B-shaped model on one GPU, for docs/SCALING.md.

    python -m bench.engine_throughput                 # Llama-3.1-8B shapes, random bf16 weights
    python -m bench.engine_throughput --layers 2      # a quick check of the script itself

No weights are downloaded (the machines that ran it reach no hub): the model is
LlamaForCausalLM with Llama-3.1-8B's shapes and random weights, which costs the same FLOPs
and memory traffic per token as the real one. Generated text is noise, so every sequence
runs to the token limit. Measures, with our TransformersEngine:
  generate   M*N-style sampling: `--prompts` distinct prompts x `--n` samples each,
             `--new-tokens` tokens, as one engine call (the shape of one timestamp's call)
  score      teacher-forced log-probs of `--prompts` x `--n` sequences (what training and
             the reference pass cost per token, forward only)
and prints tokens/s for each. A vLLM engine is expected to be faster at generation (paged
attention, CUDA graphs); it was not available on the machine that ran this.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from genius.engines.transformers_engine import TransformersEngine
from genius.toy.tokenizer import build_tokenizer


def model_8b(layers: int, dtype, device):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=layers,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=8192,
        rope_theta=500000.0,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    model.generation_config.eos_token_id = 2
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--n", type=int, default=8, help="samples per prompt (M*N = 8 in the paper)")
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--out", default=None, help="also write the numbers as JSON here")
    args = parser.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    model = model_8b(args.layers, dtype, device)
    params = sum(p.numel() for p in model.parameters())
    tokenizer = build_tokenizer()
    engine = TransformersEngine(model, tokenizer, max_batch_sequences=4096, max_batch_tokens=1 << 24)
    engine.eos_ids = torch.tensor([-1], device=model.device)  # random weights: run every row to the limit
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, len(tokenizer), (args.prompt_tokens,), generator=g).tolist() for _ in range(args.prompts)]

    def timed(fn):
        fn()  # warm-up: kernels, allocator
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return out, time.perf_counter() - start

    gen = lambda: engine.generate(prompts, n=args.n, temperature=1.0, max_new_tokens=args.new_tokens, stop=None)  # noqa: E731
    out, seconds = timed(gen)
    generated = sum(len(c.token_ids) for cs in out for c in cs)

    rows = args.prompts * args.n
    seq = torch.randint(3, len(tokenizer), (min(rows, 16), args.prompt_tokens + args.new_tokens), generator=g).to(device)

    @torch.inference_mode()
    def score():
        logits = model(seq).logits.float()
        return torch.log_softmax(logits[:, :-1], -1).gather(-1, seq[:, 1:, None])

    _, score_seconds = timed(score)
    result = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "dtype": str(dtype),
        "parameters": params,
        "generate": {"rows": rows, "new_tokens": args.new_tokens, "tokens": generated, "seconds": seconds, "tokens_per_s": generated / seconds},
        "score": {"tokens": seq.numel(), "seconds": score_seconds, "tokens_per_s": seq.numel() / score_seconds},
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
    }
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
