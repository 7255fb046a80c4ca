"""A LoRA round stores its adapter; its policy is the base plus the adapters of its chain.

Two LoRA rounds trained on the 2-layer model of tests/train_helpers.py (CPU, one thread,
seconds), round 2 on top of round 1, with different ranks, so the chain, its lineage hashes,
the merge, the stacked adapter vLLM serves and `genius export` are checked on real adapters.

Tolerance, `ATOL` = 1e-5 nats per token: the chain merged (W + s1 B1 A1 + s2 B2 A2) x and the
adapters applied unmerged, W x + s1 B1 (A1 x) + s2 B2 (A2 x) (peft with both active), are the
same sums grouped differently. In float32 (unit roundoff 6e-8) a dot product of width 32 to 64
regrouped moves by a few 1e-7 relative; through 2 layers and a log-softmax over 21 tokens
that stays near 1e-6 (measured: 2.4e-7). The adapters move log-probs by tenths of a nat
(asserted), 10^4 times the tolerance, so an adapter left out or applied twice cannot pass.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from train_helpers import synthetic_pairs, tiny_model

from genius.config import ModelConfig, TrainingConfig
from genius.engines.lineage import LINEAGE, Chain, LineageError, folder_hash, read_adapter, resolve_chain, stack_adapters
from genius.engines.loading import check_model, export_model, load_model
from genius.training.recipe import train_round

CPU = ModelConfig(device="cpu")
LORA = TrainingConfig(batch_size=8, epochs=2, learning_rate=1e-2, beta=0.5, threads=1, finetune="lora")
ATOL = 1e-5  # nats per token; see the module docstring


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """(base, round 1's checkpoint, round 2's checkpoint): r1 at rank 4 on the base, r2 at rank 2 with rsLoRA on r1."""
    root = tmp_path_factory.mktemp("chain")
    base = tiny_model(root / "base")
    pairs = synthetic_pairs(20)
    r1, r2 = str(root / "r1" / "checkpoint"), str(root / "r2" / "checkpoint")
    train_round(pairs, base, r1, LORA.model_copy(update={"lora_r": 4, "lora_alpha": 8}), CPU, log=lambda _: None)
    train_round(pairs, r1, r2, LORA.model_copy(update={"lora_r": 2, "lora_alpha": 4}), CPU, log=lambda _: None)
    return base, r1, r2


def token_logps(model, ids: list[list[int]]) -> torch.Tensor:
    """(B, T-1) log-probs of each next token of equal-length `ids`, fp32."""
    x = ids if torch.is_tensor(ids) else torch.tensor(ids)
    with torch.no_grad():
        logits = model(input_ids=x).logits.float()
    return torch.log_softmax(logits[:, :-1], -1).gather(2, x[:, 1:, None])[..., 0]


@pytest.fixture(scope="module")
def sequences(chain):
    from genius.toy.tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    texts = [f"Q:{p.query}\n{p.chosen}" for p in synthetic_pairs(6, seed=1)]
    ids = [tokenizer(t).input_ids for t in texts]
    width = min(map(len, ids))
    return [i[:width] for i in ids]


def test_a_lora_round_saves_its_adapter_and_lineage_only(chain):
    base, r1, r2 = chain
    for checkpoint, parent in ((r1, base), (r2, r1)):
        names = {f.name for f in Path(checkpoint).iterdir()}
        assert names == {"adapter_model.safetensors", "adapter_config.json", LINEAGE, "genius_training.json"}
        lineage = json.loads((Path(checkpoint) / LINEAGE).read_text())
        assert lineage["parent"] == parent and lineage["parent_sha256"] == folder_hash(parent)
        assert lineage["base"] == base and lineage["base_sha256"] == folder_hash(base)
        # a tool that knows no lineage reads the adapter's base as its parent, not the bare base
        assert json.loads((Path(checkpoint) / "adapter_config.json").read_text())["base_model_name_or_path"] == parent
    assert (read_adapter(r1)[:2], read_adapter(r2)[:2]) == ((4, 2.0), (2, 2.0))


def test_the_policy_is_the_base_plus_its_chain_merged(chain, sequences):
    """load_model(r2) is W + s1 B1 A1 + s2 B2 A2, by hand; its log-probs are those of the adapters applied
    unmerged, both active on the base (peft); and neither adapter is a no-op."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base, r1, r2 = chain
    assert resolve_chain(r2) == Chain(base, (r1, r2)) and resolve_chain(base) == Chain(base)
    merged, _ = load_model(r2, device="cpu")
    weights = load_file(str(Path(base) / "model.safetensors"))
    for adapter in (r1, r2):
        _, scale, modules = read_adapter(adapter)
        for name, (a, b) in modules.items():
            weights[f"{name}.weight"] = weights[f"{name}.weight"] + scale * (b @ a)
    for name, value in merged.state_dict().items():
        if name in weights:
            torch.testing.assert_close(value, weights[name], rtol=0, atol=1e-6)

    unmerged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), r1, adapter_name="r1")
    unmerged.load_adapter(r2, adapter_name="r2")
    unmerged.base_model.set_adapter(["r1", "r2"])
    chained, stacked = token_logps(merged, sequences), token_logps(unmerged.eval(), sequences)
    assert (chained - stacked).abs().max() < ATOL
    first, _ = load_model(r1, device="cpu")
    bare, _ = load_model(base, device="cpu")
    for other in (first, bare):  # each adapter moves the log-probs by far more than the tolerance
        assert (token_logps(other, sequences) - chained).abs().max() > 1e3 * ATOL


def test_round_two_trained_on_round_one_merged(chain):
    """Round 2's reference (its policy with the new adapter off, computed before the first
    step) holds round 1's policy's log-probs: the round trained on top of adapter 1 merged."""
    from test_train import pair_logps

    _, r1, r2 = chain
    reference = load_file(str(Path(r2).parent / "reference_logps.safetensors"))["logps"]
    chosen, rejected, _ = pair_logps(r1, synthetic_pairs(20))
    # sums of ~100 fp32 log-probs, from forwards over other rows: they agree to ~2e-7 of their size
    torch.testing.assert_close(reference, torch.stack([chosen, rejected], 1), rtol=1e-6, atol=1e-5)


def test_stacked_adapter_is_the_sum_of_the_deltas(tmp_path):
    """Hand-made adapters: (A1, B1) rank 2 at alpha 4 on q and v (s1 = 2); (A2, B2) rank 1 at
    alpha 3 with rsLoRA on q only (s2 = 3 / sqrt(1) = 3). Stacked: rank 3 at scale 1, with
    B A = s1 B1 A1 + s2 B2 A2 on q and s1 B1 A1 on v (A2, B2 blocks zero there)."""
    g = torch.Generator().manual_seed(0)
    prefix = "base_model.model.model.layers.0.self_attn"
    mats = {k: torch.randn(shape, generator=g) for k, shape in (("a1", (2, 5)), ("b1", (4, 2)), ("a2", (1, 5)), ("b2", (4, 1)))}
    for name, r, alpha, rslora, modules in (("one", 2, 4, False, ("q_proj", "v_proj")), ("two", 1, 3, True, ("q_proj",))):
        folder = tmp_path / name
        folder.mkdir()
        i = "1" if name == "one" else "2"
        tensors = {f"{prefix}.{m}.lora_{x}.weight": mats[f"{x.lower()}{i}"].clone() for m in modules for x in "AB"}
        save_file(tensors, str(folder / "adapter_model.safetensors"))
        config = {"peft_type": "LORA", "r": r, "lora_alpha": alpha, "use_rslora": rslora, "target_modules": list(modules)}
        (folder / "adapter_config.json").write_text(json.dumps(config))
    rank = stack_adapters((str(tmp_path / "one"), str(tmp_path / "two")), tmp_path / "stacked")
    r, scale, modules = read_adapter(str(tmp_path / "stacked"))
    assert (rank, r, scale) == (3, 3, 1.0)
    q, v = (modules[f"model.layers.0.self_attn.{m}"] for m in ("q_proj", "v_proj"))
    delta = lambda pair: pair[1] @ pair[0]  # noqa: E731
    torch.testing.assert_close(delta(q), 2 * mats["b1"] @ mats["a1"] + 3 * mats["b2"] @ mats["a2"])
    torch.testing.assert_close(delta(v), 2 * mats["b1"] @ mats["a1"])


def test_stacked_chain_equals_the_merged_chain(chain, sequences, tmp_path):
    """The one LoRA vLLM serves for round 2, applied to the base, gives the merged chain's log-probs."""
    from genius.engines.lineage import merge_adapters

    base, r1, r2 = chain
    assert stack_adapters((r1, r2), tmp_path / "stacked") == 6
    one = merge_adapters(load_model(base, device="cpu")[0], (str(tmp_path / "stacked"),))
    merged, _ = load_model(r2, device="cpu")
    assert (token_logps(one, sequences) - token_logps(merged, sequences)).abs().max() < ATOL


def bf16_gaps(base: str, policy: str, sequences, device: str) -> dict[str, float]:
    """Mean |log p| gaps per token: the chain loaded in bfloat16 against float32 ("chain"), the base
    alone likewise ("base": what bf16 costs anyway), and the chain against the base in float32
    ("effect": what the adapters do). A bf16 merge rounds W + s B A once per adapter."""
    ids = torch.tensor(sequences, device=device)
    mean = {}
    for name, path in (("chain", policy), ("base", base)):
        f32, b16 = (token_logps(load_model(path, dtype, device)[0], ids) for dtype in ("float32", "bfloat16"))
        mean[name] = (b16 - f32).abs().mean().item()
        mean[f"{name}_f32"] = f32
    mean["effect"] = (mean.pop("chain_f32") - mean.pop("base_f32")).abs().mean().item()
    return mean


def test_a_chain_merged_in_bf16_keeps_its_adapters(chain, sequences):
    """Loaded in bf16 (on this CPU; tests/test_gpu.py on CUDA), round 2's policy is off its float32
    self by what bf16 costs the base alone (x3: noise), and 20 times less than the adapters' effect.
    Measured here: chain 4.5e-4, base 3.8e-4, effect 9.2e-2 nats per token."""
    base, _, r2 = chain
    gaps = bf16_gaps(base, r2, sequences, "cpu")
    assert gaps["chain"] < 3 * gaps["base"] and gaps["chain"] < gaps["effect"] / 20, gaps


def test_export_writes_the_merged_policy_as_a_plain_folder(chain, sequences, tmp_path):
    from transformers import AutoModelForCausalLM

    _, _, r2 = chain
    export_model(r2, str(tmp_path / "out"), CPU, log=lambda _: None)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {f.name for f in (tmp_path / "out").iterdir()}
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "out")  # no genius, no peft
    assert torch.equal(token_logps(plain, sequences), token_logps(load_model(r2, device="cpu")[0], sequences))
    with pytest.raises(FileExistsError, match="exists"):
        export_model(r2, str(tmp_path / "out"), CPU)


def copy_chain(chain, root: Path) -> tuple[str, str, str]:
    """The chain copied under `root`, lineage files pointing at the copies (hashes unchanged)."""
    names = ("base", "r1", "r2")
    copies = [str(root / n) for n in names]
    for src, dst in zip(chain, copies):
        shutil.copytree(src, dst)
    for i in (1, 2):
        record = json.loads((Path(copies[i]) / LINEAGE).read_text())
        (Path(copies[i]) / LINEAGE).write_text(json.dumps(record | {"parent": copies[i - 1], "base": copies[0]}))
    # r2's record holds r1's hash, which holds r1's lineage file: rewrite it as copied
    record = json.loads((Path(copies[2]) / LINEAGE).read_text())
    (Path(copies[2]) / LINEAGE).write_text(json.dumps(record | {"parent_sha256": folder_hash(copies[1])}))
    return tuple(copies)


def test_a_changed_base_or_link_is_refused_in_one_line(chain, tmp_path):
    base, r1, r2 = copy_chain(chain, tmp_path)
    check_model(r2)  # the copy is whole
    weights = load_file(str(Path(base) / "model.safetensors"))
    name = next(iter(weights))
    save_file(weights | {name: weights[name] + 1e-3}, str(Path(base) / "model.safetensors"))
    for loader in (check_model, lambda p: load_model(p, device="cpu")):
        with pytest.raises(LineageError, match=rf"its base {base} changed since {r1} was trained on it") as e:
            loader(r2)
        assert "\n" not in str(e.value)

    base, r1, r2 = copy_chain(chain, tmp_path / "again")
    config = json.loads((Path(r1) / "adapter_config.json").read_text())
    (Path(r1) / "adapter_config.json").write_text(json.dumps(config | {"lora_alpha": 99}))
    with pytest.raises(LineageError, match=rf"{r1} changed since {r2} was trained on it"):
        load_model(r2, device="cpu")
    load_model(r1, device="cpu")  # r1 itself is still whole: only what was trained on it is refused
    shutil.rmtree(r1)
    with pytest.raises(LineageError, match=rf"{r2} was trained on {r1}, which does not exist"):
        check_model(r2)
