"""params.yaml loads into typed objects; bad files fail at load time naming key and line."""

from pathlib import Path

import pytest
import yaml

from genius.config import ConfigError, Params, load_params, write_overrides

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_params_load_and_every_key_is_commented():
    params = load_params(ROOT / "params.yaml")
    assert isinstance(params, Params)
    assert params.sampling.step_beam_size == 2 and params.sampling.foresight_score == "full"
    for n, line in enumerate((ROOT / "params.yaml").read_text().splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#") and not line.rstrip().endswith(":"):
            assert "#" in line, f"params.yaml:{n} has no comment: {line!r}"


PLANS = {"replicate.yaml", "sweep.yaml"}  # configs/ that are experiment plans, not params files


@pytest.mark.parametrize("preset", sorted(p.name for p in (ROOT / "configs").glob("*.yaml") if p.name not in PLANS))
def test_every_shipped_preset_loads(preset):
    params = load_params(ROOT / "configs" / preset)
    assert params.rounds.registry != "rounds.yaml", f"{preset} must keep a lineage of its own"


SECTIONS = list(Params.model_fields)


def write(tmp_path, text, pad=True):
    """A params file with `text`, and every section it does not write as `{}` (all defaults)."""
    path = tmp_path / "params.yaml"
    try:
        present = set(yaml.safe_load(text) or {}) if pad else set(SECTIONS)
    except yaml.YAMLError:
        present = set(SECTIONS)
    path.write_text(text + "".join(f"{s}: {{}}\n" for s in SECTIONS if s not in present))
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        ("sampling:\n  tau: 0.1\n  step_beam: 2\n", "params.yaml:3: sampling: unknown keys ['step_beam'] (known: engine, step_beam_size"),
        ("sampling:\n  tau: -1\n", "params.yaml:2: sampling.tau: must be > 0, got -1"),
        ("training:\n  loss: ppo\n", "params.yaml:2: training.loss: must be one of 'aco', 'dpo', 'ipo', 'simpo', 'ropo', 'sft', 'scpo', got 'ppo'"),
        ("rounds:\n  num_rounds: two\n", "params.yaml:2: rounds.num_rounds: expected an integer, got 'two'"),
        ("model:\n  trust_remote_code: yes please\n", "model.trust_remote_code: expected true or false"),
        ("queries:\n  paths: 3\n", "queries.paths: expected a list"),
        ("eval: 5\n", "eval: expected a section"),
        ("colour: blue\n", "params.yaml:1: unknown keys ['colour'] (known: model, toy"),
        ("sampling:\n  tau: [0.1\n", "not valid YAML"),
        ("training:\n  warmup_ratio: 1.5\n", "params.yaml:2: training.warmup_ratio: must be < 1, got 1.5"),
        ("training:\n  learning_rate: .inf\n", "params.yaml:2: training.learning_rate: must be a finite number, got inf"),
        ("sampling:\n  tau: .nan\n", "sampling.tau: must be a finite number"),
        ("eval:\n  limit: 0\n", "params.yaml:2: eval.limit: must be > 0"),
        ('sampling:\n  step_delimiter: ""\n', "params.yaml:2: sampling.step_delimiter: must not be empty"),
        ("sampling:\n  tau: 0.1\nsampling:\n  tau: 0.2\n", "params.yaml:3: sampling: written twice (first at line 1)"),
        ("sampling:\n  tau: 0.1\n  tau: 0.2\n", "params.yaml:3: sampling.tau: written twice"),
        ("method:\n  name: star\n", "params.yaml:2: method.name: must be one of 'genius', 'self_consistency'"),
        ("method:\n  answer: regex:abc\n", "params.yaml: method.answer: answer reader regex:abc: needs a group"),
        ("method:\n  answer: last\n", "method.answer: answer reader must be one of toy, reasoning_gym"),
    ],
)
def test_bad_values_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        load_params(write(tmp_path, text))


def test_empty_file_and_missing_sections_are_errors(tmp_path):
    with pytest.raises(ConfigError, match="params.yaml: empty params file"):
        load_params(write(tmp_path, "", pad=False))
    with pytest.raises(ConfigError, match="params.yaml: missing section\\(s\\) toy, queries"):
        load_params(write(tmp_path, "model: {}\nsampling: {}\ntraining: {}\neval: {}\nrounds: {}\ntracking: {}\norchestration: {}\n", pad=False))


def test_empty_sections_take_defaults_and_overrides_apply(tmp_path):
    params = load_params(write(tmp_path, "rounds:\n  num_rounds: 3\n"), ["sampling.tau=0.05", "queries.id_field=null"])
    assert params.rounds.num_rounds == 3 and params.sampling.tau == 0.05 and params.queries.id_field is None
    assert params.training.loss == "aco"
    # `1e-4` without a dot is a string to YAML 1.1; a number field takes it as the number it is
    assert load_params(write(tmp_path, ""), ["training.learning_rate=1e-4"]).training.learning_rate == 1e-4
    with pytest.raises(ConfigError, match="override 'sampling.tau': expected key=value"):
        load_params(write(tmp_path, ""), ["sampling.tau"])
    with pytest.raises(ConfigError, match="sampling.num_rollouts: must be > 0"):
        load_params(write(tmp_path, ""), {"sampling.num_rollouts": 0})


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: cannot read params file"):
        load_params(tmp_path / "nope.yaml")


def test_hash_is_stable_and_section_scoped(tmp_path):
    a = load_params(write(tmp_path, ""))
    b = load_params(write(tmp_path, ""), ["training.beta=0.2"])
    assert a.hash("sampling") == b.hash("sampling") and a.hash() != b.hash()


def test_written_overrides_read_back(tmp_path):
    """ruamel writes YAML 1.2; what it writes must still load with the PyYAML that reads params."""
    path = write(tmp_path, 'queries:\n  paths: ["reasoning_gym:chain_sum?size=5&seed=1"]  # kept\n')
    write_overrides(path, ["model.path=/m/x", "queries.paths=['reasoning_gym:basic_arithmetic?size=20&seed=2', a.jsonl]"])
    params = load_params(path)
    assert params.queries.paths == ["reasoning_gym:basic_arithmetic?size=20&seed=2", "a.jsonl"]
    assert params.model.path == "/m/x" and "# kept" in path.read_text()


def test_params_yaml_comments_are_the_schema():
    """Every key is documented once, in genius/config/sections.py; params.yaml's comments are written from it."""
    from genius.config.document import descriptions, document

    for key, text in descriptions().items():
        assert text.strip(), f"{key} has no description in genius/config/sections.py"
    text = (ROOT / "params.yaml").read_text()
    assert document(text) == text, "params.yaml's comments differ from the schema: run `python -m genius.config.document`"


# Params.hash of each preset, as the runs already done recorded it (sampling.json's config_hash,
# the sampler's resume check): a change to the schema must not change them. The toy section's
# defaults changed on purpose with issue 21 (pre-training to a dev target: pretrain_steps 1000,
# num_dev, dev_target, dev_every), which moved these from 12c1fa6b440d, 0a0dc41fc673 and
# 2022f8108a64; every other section's hash, sampling's included, stayed as it was. The rounds
# section gained `keep` and `gc` with issue 24 (retention: what stays on disk, never what a stage
# writes), which moved them from 7f1ffc16c712, bb20213b9882 and 2fee70b9e619; sampling's stayed.
PRESET_HASHES = {
    "params.yaml": "1698f761bcae",  # 11f45a013b7e until issue 23 set the toy's recipe (dedup, lowest, sft_weight 100)
    "configs/paper-8b.yaml": "4e7c565ab903",
    "configs/smollm2-rg.yaml": "8cfab26286c5",  # 30f28991eaaa until the preset trained on 2 threads (issue 20)
}


@pytest.mark.parametrize("preset", sorted(PRESET_HASHES))
def test_preset_hashes_do_not_move(preset):
    assert load_params(ROOT / preset).hash() == PRESET_HASHES[preset]


def test_an_optional_section_at_its_default_leaves_the_hash_alone(tmp_path):
    """`method` absent, or written as the schema's defaults: the same hash; any other method: another."""
    text = (ROOT / "configs" / "smollm2-rg.yaml").read_text()
    written = write(tmp_path, text + "\nmethod:\n  name: genius\n  samples: 8\n")
    assert load_params(written).hash() == PRESET_HASHES["configs/smollm2-rg.yaml"]
    assert load_params(written, ["method.name=lmsi"]).hash() != PRESET_HASHES["configs/smollm2-rg.yaml"]
    assert load_params(written, ["method.samples=4"]).hash("sampling") == load_params(written).hash("sampling")


def test_unparsable_files_are_one_line_with_their_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("model:\n  path: a\n  dtype: [float32\ntoy: {}\n")
    with pytest.raises(ConfigError) as e:
        load_params(path)
    assert str(e.value).startswith(f"{path}:4: not valid YAML: expected ',' or ']'") and "\n" not in str(e.value)
    assert "line 3" in str(e.value) and "<unicode string>" not in str(e.value)
    path.write_bytes(b"model:\n  path: a\n  dtype: \xe9\n")  # latin-1, not UTF-8
    with pytest.raises(ConfigError, match=rf"^{path}:3: not UTF-8 \(byte 0xe9\)"):
        load_params(path)


def test_the_optional_grpo_section_leaves_old_hashes_alone(tmp_path):
    """A params file without `grpo` (every preset before issue 25), or with it at the schema's defaults,
    hashes as it did before the section existed; any other value changes the hash, not the others'."""
    text = (ROOT / "configs" / "smollm2-rg.yaml").read_text()
    written = write(tmp_path, text + "\ngrpo:\n  num_generations: 8\n  engine: genius\n")
    assert load_params(written).hash() == PRESET_HASHES["configs/smollm2-rg.yaml"]
    other = load_params(written, ["grpo.learning_rate=1e-3"])
    assert other.grpo.learning_rate == 1e-3 and other.grpo.num_generations == 8
    assert other.hash() != PRESET_HASHES["configs/smollm2-rg.yaml"] and other.hash("sampling") == load_params(written).hash("sampling")


def test_grpo_section_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"params.yaml:\d+: grpo: unknown keys \['num_generation'\] \(known: engine, "):
        load_params(write(tmp_path, "grpo:\n  num_generation: 4\n"))
    with pytest.raises(ConfigError, match=r"grpo.num_generations: must be > 1, got 1"):
        load_params(write(tmp_path, "grpo:\n  num_generations: 1\n"))
