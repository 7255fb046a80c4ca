"""How the transformers engine draws a token: `torch.multinomial` against inverse CDF, side by side.

    python -m bench.engine_draw                          # SmolLM2, rows 32 128 512, one engine call of 16 x 8
    python -m bench.engine_draw --model DIR --rows 128 --prompts 64 --n 8 --new-tokens 160

`torch.multinomial` on a CPU draws exponential noise over the whole vocabulary for every row
(49,152 entries for SmolLM2), a quarter of a decode step's time at 128 rows (torch's profiler:
`aten::exponential_`). The engine now takes one uniform a row and the first token whose
cumulative probability passes it (`genius.engines.base.inverse_cdf_sample`). Both sample
softmax(logits / T) exactly; they draw different tokens from the same seed. Prints:

  draw     milliseconds per draw of (rows, vocabulary) logits at T = 1, each way, and the ratio
  engine   one `TransformersEngine.generate` call (`--prompts` random prompts of 55-80 tokens,
           `--n` samples each, `--new-tokens` at T = 1, no stop), each way, passes alternating:
           tokens/s and the ratio
"""

from __future__ import annotations

import argparse
import time

import genius  # noqa: F401  first: sets torch's CPU environment before torch loads
import torch

from genius.engines import transformers_engine
from genius.threads import torch_threads


def multinomial_draw(logits: torch.Tensor, temps: torch.Tensor) -> torch.Tensor:
    """The engine's draw before inverse CDF (`transformers_engine._draw` as it was)."""
    if not (temps > 0).any():
        return logits.argmax(-1)
    tok = torch.multinomial(torch.softmax(logits / temps.clamp(min=1e-6)[:, None], dim=-1), 1).squeeze(1)
    return tok if (temps > 0).all() else torch.where(temps > 0, tok, logits.argmax(-1))


DRAWS = {"multinomial": multinomial_draw, "inverse CDF": transformers_engine._draw}


def draw_ms(rows: int, vocab: int, repeats: int = 5) -> dict[str, float]:
    logits, temps = torch.randn(rows, vocab, generator=torch.Generator().manual_seed(0)) * 3, torch.ones(rows)
    out = {}
    for name, draw in [*DRAWS.items(), *DRAWS.items()]:  # twice, alternating: the second of each counts
        start = time.perf_counter()
        for _ in range(repeats):
            draw(logits, temps)
        out[name] = (time.perf_counter() - start) / repeats * 1000
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/smollm2-135m-instruct", help="an HF model folder")
    parser.add_argument("--rows", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=100)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(args.model).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    vocab = model.get_output_embeddings().weight.shape[0]
    with torch_threads(args.threads):
        print(f"| rows x {vocab:,} | multinomial ms | inverse CDF ms | ratio |\n|--:|--:|--:|--:|")
        for rows in args.rows:
            ms = draw_ms(rows, vocab)
            print(f"| {rows} | {ms['multinomial']:.1f} | {ms['inverse CDF']:.1f} | {ms['multinomial'] / ms['inverse CDF']:.2f}x |", flush=True)

        g = torch.Generator().manual_seed(0)
        lengths = torch.randint(55, 81, (args.prompts,), generator=g).tolist()
        prompts = [torch.randint(100, vocab // 2, (k,), generator=g).tolist() for k in lengths]
        engine = transformers_engine.TransformersEngine(model, tokenizer)
        seconds, tokens = {name: 0.0 for name in DRAWS}, {name: 0 for name in DRAWS}
        try:
            for p in range(args.passes):
                for name, draw in DRAWS.items():
                    transformers_engine._draw = draw
                    torch.manual_seed(p)
                    before, start = engine.cost.generated_tokens, time.perf_counter()
                    engine.generate(prompts, n=args.n, temperature=1.0, max_new_tokens=args.new_tokens, stop=None)
                    seconds[name] += time.perf_counter() - start
                    tokens[name] += engine.cost.generated_tokens - before
                    print(f"pass {p + 1} {name}: {seconds[name]:.1f} s so far", flush=True)
        finally:
            transformers_engine._draw = DRAWS["inverse CDF"]
    rate = {name: tokens[name] / seconds[name] for name in DRAWS}
    print(f"\none engine call of {args.prompts} prompts x n={args.n}, up to {args.new_tokens} tokens, T=1, "
          f"{args.threads} threads, {args.passes} passes each")  # fmt: skip
    print("| draw | seconds | tokens | tok/s |\n|---|--:|--:|--:|")
    for name in DRAWS:
        print(f"| {name} | {seconds[name]:.1f} | {tokens[name]:,} | {rate[name]:.1f} |")
    print(f"\ninverse CDF / multinomial: {rate['inverse CDF'] / rate['multinomial']:.2f}x tokens/s")


if __name__ == "__main__":
    main()
