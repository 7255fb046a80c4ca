"""genius.evaluation.harness against independent references: plain HF greedy generation, the lm_eval
CLI on the same checkpoint, and a merged copy of a LoRA adapter; the vLLM engine's arguments.

A tiny Llama is over-fitted on the gold solutions of a few toy problems, so on a test set of
those problems plus unseen ones it scores strictly between 0 and 1: a wrong prompt, stop
rule or answer filter in the lm-eval task would change the number.
"""

import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from genius.config import EvalConfig, ModelConfig
from genius.evaluation.harness import evaluate
from genius.evaluation.tasks import EvaluationError
from genius.toy import task
from genius.toy.tokenizer import build_tokenizer

pytestmark = pytest.mark.e2e  # real lm-eval runs

REPO = Path(__file__).resolve().parents[1]
CPU = ModelConfig(device="cpu")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """(model dir, test.jsonl, test problems): 8 problems learned by heart, 8 unseen."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = random.Random(0)
    tok = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=128, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    learned = [task.sample_problem(rng) for _ in range(8)]
    unseen = [task.sample_problem(rng) for _ in range(8)]
    chats = [
        [{"role": "user", "content": p.query}, {"role": "assistant", "content": task.solve(p, rng)}] for p in learned
    ]
    batch = tok(tok.apply_chat_template(chats, tokenize=False), return_tensors="pt", padding=True)
    labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(150):  # ~1 s; the loss ends near 0.1, so the learned problems come out right
        loss = model(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    root = tmp_path_factory.mktemp("toy")
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    problems = learned + unseen
    rows = [{"id": f"t{i:05d}", "query": p.query, "answer": str(p.answer)} for i, p in enumerate(problems)]
    (root / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "model", root / "test.jsonl", problems


def reference_correct(model_dir: Path, problems) -> list[bool]:
    """Greedy HF generate, one prompt at a time, written without lm-eval or the chat template."""
    tok = build_tokenizer()
    model = LlamaForCausalLM.from_pretrained(model_dir).eval()
    correct = []
    for p in problems:
        ids = tok(f"<bos>Q:{p.query}\n", return_tensors="pt").input_ids
        with torch.no_grad():
            out = model.generate(
                ids, do_sample=False, max_new_tokens=64, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
            )
        response = tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True).split("Q:")[0]  # the task's stop string
        correct.append(task.extract_answer(response) == p.answer)
    return correct


def without_generation_eos(model_dir: Path, out: Path) -> Path:
    """A copy whose generation_config names no EOS, as some hub checkpoints ship."""
    shutil.copytree(model_dir, out)
    for name in ("config.json", "generation_config.json"):
        data = json.loads((out / name).read_text())
        data.pop("eos_token_id", None)
        (out / name).write_text(json.dumps(data))
    return out


# Without EOS in generation_config, lm-eval would let batched sequences run on past EOS and
# read the text after it as part of the response (evaluate._stop_at_tokenizer_eos).
@pytest.mark.parametrize("generation_eos", [True, False])
def test_greedy_accuracy_equals_plain_generate(toy, tmp_path, generation_eos):
    model_dir, test_path, problems = toy
    if not generation_eos:
        model_dir = without_generation_eos(model_dir, tmp_path / "model")
    cfg = EvalConfig(tasks=["genius_toy"], test_path=str(test_path), batch_size=8, threads=1)
    result = evaluate(str(model_dir), cfg, CPU, base_dir=REPO)

    expected = reference_correct(model_dir, problems)
    assert 0 < sum(expected) < len(expected), "the test model must get some right and some wrong"
    records = result["samples"]["genius_toy"]
    assert [r["id"] for r in records] == [f"t{i:05d}" for i in range(len(problems))]
    assert [r["correct"] for r in records] == expected
    assert result["accuracy"]["genius_toy"] == sum(expected) / len(expected)
    assert result["num_samples"]["genius_toy"] == len(problems)
    assert result["stderr"]["genius_toy"] > 0


def test_sampled_task_scores_its_own_samples(toy):
    """Temperature-1 sampling on the first 12 problems (8 learned, 4 unseen): the accuracy is
    the count, made here from the logged responses and the test file, of the right answers."""
    model_dir, test_path, problems = toy
    tasks = ["genius_toy", "genius_toy_sampled"]
    cfg = EvalConfig(tasks=tasks, test_path=str(test_path), limit=12, threads=1, diagnostics=False)
    result = evaluate(str(model_dir), cfg, CPU, base_dir=REPO)
    gold = {json.loads(line)["id"]: int(json.loads(line)["answer"]) for line in test_path.read_text().splitlines()}
    records = result["samples"]["genius_toy_sampled"]
    assert result["num_samples"]["genius_toy_sampled"] == 12
    assert [r["id"] for r in records] == [f"t{i:05d}" for i in range(12)]  # the limit keeps the first rows
    answers = [task.extract_answer(r["response"]) for r in records]
    correct = [a == gold[r["id"]] for a, r in zip(answers, records)]
    assert [r["correct"] for r in records] == correct
    assert result["accuracy"]["genius_toy_sampled"] == sum(correct) / len(correct)
    assert 0 < sum(correct) < len(correct), answers  # a count strictly inside (0, 12) makes the comparison bite
    # sampled, not greedy: some responses differ from the greedy task's on the same problems
    greedy = [r["response"] for r in result["samples"]["genius_toy"]]
    assert [r["response"] for r in records] != greedy


def test_missing_test_file_is_a_clear_error(toy, tmp_path):
    model_dir, _, _ = toy
    cfg = EvalConfig(tasks=["genius_toy"], test_path=str(tmp_path / "absent.jsonl"), threads=1)
    with pytest.raises(FileNotFoundError, match=r"genius_toy: test set .*absent\.jsonl does not exist"):
        evaluate(str(model_dir), cfg, CPU, base_dir=REPO)


def test_missing_metric_is_a_clear_error(toy):
    model_dir, test_path, _ = toy
    cfg = EvalConfig(tasks=["genius_toy"], test_path=str(test_path), metric="acc,none", limit=2, threads=1)
    with pytest.raises(EvaluationError, match=r"'genius_toy' reported no metric 'acc,none'.*exact_match,strict-match"):
        evaluate(str(model_dir), cfg, CPU, base_dir=REPO)


@pytest.mark.parametrize("response", ["3+4=7\nA:7", "A:12\nA:59", "1+2=3\nA:03", "A:0", "5+5=10\n", "A:x"])
def test_strict_match_reads_the_answer_like_extract_answer(response):
    from lm_eval.filters.extraction import RegexFilter

    from genius.evaluation.tasks import read_task_yaml

    for name in ("genius_toy.yaml", "genius_toy_sampled.yaml"):
        cfg = read_task_yaml(REPO / "eval" / "genius_toy" / name)
        (strict,) = [f for f in cfg["filter_list"] if f["name"] == "strict-match"]
        regex = RegexFilter(**{k: v for k, v in strict["filter"][0].items() if k != "function"})
        (filtered,) = regex.apply([[response]], [{}])[0]
        expected = task.extract_answer(response)
        assert filtered == (str(expected) if expected is not None else "[invalid]")


def test_in_process_evaluation_matches_the_lm_eval_cli(toy, tmp_path):
    """The same checkpoint through `lm_eval` as a user would run it gives the same greedy numbers.

    In process, genius.evaluation.harness hands lm-eval a preloaded model (and stops generation at the
    tokenizer's EOS itself), and its generation runs on the transformers engine; the CLI loads the
    model from disk and generates with HF `generate`. Both apply the chat template. Sampled tasks
    draw in another order there (test_engine_lm_runs_plain_generation_and_leaves_the_rest_to_hflm).
    """
    import os
    import subprocess
    import sys

    model_dir, test_path, _ = toy
    tasks = ["genius_toy"]
    cfg = EvalConfig(tasks=tasks, test_path=str(test_path), batch_size=8, seed=0, threads=1, diagnostics=False)
    ours = evaluate(str(model_dir), cfg, CPU, base_dir=REPO)

    cli = Path(sys.executable).parent / "lm_eval"
    command = [
        str(cli), "--model", "hf", "--model_args", f"pretrained={model_dir},dtype=float32", "--device", "cpu",
        "--include_path", str(REPO / "eval"), "--tasks", ",".join(tasks), "--apply_chat_template",
        "--metadata", json.dumps({"test_path": str(test_path)}), "--batch_size", "8", "--seed", "0",
        "--output_path", str(tmp_path / "out"), "--log_samples",
    ]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    (results_file,) = (tmp_path / "out").rglob("results_*.json")
    theirs = json.loads(results_file.read_text())["results"]
    for task in tasks:
        assert ours["accuracy"][task] == theirs[task][cfg.metric], task
        (samples_file,) = (tmp_path / "out").rglob(f"samples_{task}_[0-9]*.jsonl")  # the name ends in a timestamp
        rows = [json.loads(line) for line in samples_file.read_text().splitlines()]
        cli_answers = {r["doc_id"]: r["filtered_resps"][0] for r in rows if r["filter"] == "strict-match"}
        assert [r["answer"] for r in ours["samples"][task]] == [cli_answers[r["doc_id"]] for r in ours["samples"][task]]
    assert 0 < ours["accuracy"]["genius_toy"] < 1, "a score strictly inside (0, 1) makes the comparison bite"


def test_plain_temperature_reads_what_hf_generate_would_apply():
    """Hand-read cases: HF `generate` fills an unset top_k with 50, so sampling is plain only when
    the request or the model's generation config turns it off."""
    from transformers import GenerationConfig

    from genius.evaluation.engine_lm import plain_temperature

    config = GenerationConfig(eos_token_id=2)
    assert plain_temperature({"do_sample": False, "temperature": 0.0}, config) == 0.0
    assert plain_temperature({"do_sample": False, "top_k": 5}, config) == 0.0  # greedy ignores the cut-offs
    assert plain_temperature({"do_sample": True, "temperature": 0.7, "top_k": 0, "top_p": 1.0}, config) == 0.7
    assert plain_temperature({"do_sample": True, "temperature": 1.0}, config) is None  # HF's top_k 50
    assert plain_temperature({"do_sample": True, "temperature": 1.0}, GenerationConfig(top_k=0)) == 1.0
    assert plain_temperature({"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 0.9}, config) is None
    assert plain_temperature({"do_sample": False}, GenerationConfig(repetition_penalty=1.1)) is None
    assert plain_temperature({"do_sample": False, "num_beams": 4}, config) is None
    assert plain_temperature({"do_sample": False, "guidance_scale": 2.0}, config) is None  # not known: HF's own path
    assert plain_temperature({"do_sample": True, "top_k": 0}, config) is None  # no temperature: HFLM passes 0.0, HF refuses


def test_engine_lm_runs_plain_generation_and_leaves_the_rest_to_hflm(toy):
    """One generate_until call with three kinds of requests, against HFLM on the same model:
    top-k sampling goes to HFLM's own code (the same draws, seeded alike); greedy runs on the engine
    and gives HFLM's responses; plain T=1 sampling runs on the engine too (its own draws)."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from genius.evaluation.engine_lm import EngineLM

    model_dir, _, problems = toy
    model = LlamaForCausalLM.from_pretrained(model_dir).eval()
    tok = build_tokenizer()
    chats = [[{"role": "user", "content": p.query}] for p in problems[8:14]]  # unseen: samples vary
    contexts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]
    kinds = [
        {"until": ["Q:"], "do_sample": True, "temperature": 1.0, "top_k": 5, "max_gen_toks": 40},
        {"until": ["Q:"], "do_sample": False, "temperature": 0.0, "max_gen_toks": 40},
        {"until": ["Q:"], "do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "max_gen_toks": 40},
    ]
    requests = [Instance("generate_until", {}, (c, kinds[k]), i) for k in range(3) for i, c in enumerate(contexts)]
    outputs = {}
    for name, cls in [("hflm", HFLM), ("ours", EngineLM)]:
        lm = cls(pretrained=model, tokenizer=tok, batch_size=4, device="cpu")
        torch.manual_seed(0)
        outputs[name] = lm.generate_until(requests, disable_tqdm=True)
    hflm, ours = (outputs[k] for k in ("hflm", "ours"))
    top_k, greedy, plain = slice(0, 6), slice(6, 12), slice(12, 18)
    assert ours[top_k] == hflm[top_k]
    assert ours[greedy] == hflm[greedy] and any(ours[greedy])
    assert lm.engine.cost.calls == 2  # the greedy group and the plain sampled group, one call each
    assert lm.engine.cost.generated_tokens > 0 and all(isinstance(t, str) for t in ours[plain])
    assert ours[plain] != ours[greedy]  # sampled, not greedy


def lora_adapter(model_dir: Path, out: Path, rank: int = 4):
    """(adapter folder, the same model merged): a LoRA on the toy with large random weights."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    lora = LoraConfig(r=rank, lora_alpha=rank, target_modules=["q_proj", "v_proj"])
    model = get_peft_model(LlamaForCausalLM.from_pretrained(model_dir), lora)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero: the adapter would change nothing
            torch.nn.init.normal_(p, std=0.5)
    model.save_pretrained(out)
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(model_dir)
    return out, model.merge_and_unload()


def test_a_foreign_lora_adapter_is_evaluated_on_the_base_it_names(toy, tmp_path):
    """An adapter saved by peft elsewhere (no lineage file) goes on the base its config names."""
    model_dir, test_path, _ = toy
    adapter, merged = lora_adapter(model_dir, tmp_path / "adapter")
    merged.save_pretrained(tmp_path / "merged")
    build_tokenizer().save_pretrained(tmp_path / "merged")
    cfg = EvalConfig(tasks=["genius_toy"], test_path=str(test_path), batch_size=8, threads=1, diagnostics=False)
    answers = {
        name: [r["answer"] for r in evaluate(str(path), cfg, CPU, base_dir=REPO)["samples"]["genius_toy"]]
        for name, path in (("base", model_dir), ("adapter", adapter), ("merged", tmp_path / "merged"))
    }
    assert answers["adapter"] == answers["merged"] != answers["base"]


def test_vllm_model_args(toy, tmp_path):
    """lm-eval's VLLM arguments, built without vLLM: a full checkpoint, and a LoRA round served as
    its base plus its stacked chain in the smallest LoRA slot vLLM offers that fits its rank."""
    from genius.engines.vllm_engine import ServedPolicy, served_policy
    from genius.evaluation.harness import vllm_model_args

    model_dir, _, _ = toy
    cfg = EvalConfig(engine="vllm", seed=3, vllm_tensor_parallel_size=2, vllm_gpu_memory_utilization=0.8)
    full = vllm_model_args(ServedPolicy(str(model_dir)), cfg, ModelConfig(dtype="bfloat16"))
    assert full == {
        "pretrained": str(model_dir), "dtype": "bfloat16", "trust_remote_code": False, "seed": 3, "batch_size": "auto",
        "tensor_parallel_size": 2, "gpu_memory_utilization": 0.8,
    }  # fmt: skip
    adapter, _ = lora_adapter(model_dir, tmp_path / "adapter", rank=12)
    policy = served_policy(str(adapter), stack=True)
    lora = vllm_model_args(policy, EvalConfig(vllm_max_model_len=4096), CPU)
    assert (lora["pretrained"], lora["max_lora_rank"]) == (str(model_dir), 16)
    assert lora["max_model_len"] == 4096 and Path(lora["lora_local_path"], "adapter_model.safetensors").is_file()
    wide, _ = lora_adapter(model_dir, tmp_path / "wide", rank=600)
    merged = served_policy(str(wide), stack=True)  # past vLLM's largest slot (512): merged into a folder
    assert merged.lora is None and (Path(merged.model) / "model.safetensors").is_file()
    assert vllm_model_args(merged, cfg, CPU)["pretrained"] == merged.model


def test_vllm_engine_without_vllm_is_a_clear_error(toy):
    try:  # vLLM is a GPU extra; where it is installed, this error cannot happen
        import vllm  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("vLLM is installed here")
    model_dir, test_path, _ = toy
    cfg = EvalConfig(tasks=["genius_toy"], test_path=str(test_path), engine="vllm", diagnostics=False)
    with pytest.raises(EvaluationError, match=r"eval.engine=vllm needs vLLM \(pip install '\.\[gpu\]'"):
        evaluate(str(model_dir), cfg, CPU, base_dir=REPO)
