"""Pinned CPU arithmetic (genius/numerics.py) and the environment each stage records (genius/environment.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import ROOT

from genius import environment, numerics
from genius.stages import cli

AVX2 = {"avx2", "fma", "sse4_2"}


def test_pin_sets_avx2_for_torch_and_mkl_on_an_x86_cpu_that_has_it():
    env: dict[str, str] = {}
    assert numerics.pin(env, "x86_64", AVX2) == {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}
    assert env == {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}


def test_pin_keeps_what_the_user_chose_and_pins_nothing_where_it_cannot():
    mine = {"ATEN_CPU_CAPABILITY": "default"}
    assert numerics.pin(mine, "x86_64", AVX2) == {"MKL_CBWR": "AVX2"} and mine["ATEN_CPU_CAPABILITY"] == "default"
    native = {"GENIUS_CPU_NUMERICS": "native"}
    assert numerics.pin(native, "x86_64", AVX2) == {} and "ATEN_CPU_CAPABILITY" not in native
    # torch does not check the CPU: forcing AVX2 on one without it would die with SIGILL
    assert numerics.pin({}, "x86_64", {"sse4_2", "avx"}) == {}
    assert numerics.pin({}, "x86_64", {"avx2"}) == {}  # torch's AVX2 kernels need FMA too
    assert numerics.pin({}, "aarch64", AVX2) == {}  # ARM: torch's own kernels, their own numbers (README)


def test_cpu_flags_reads_the_first_flags_line(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 fma\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert numerics.cpu_flags(str(cpuinfo)) == {"fpu", "sse", "avx2", "fma"}
    assert numerics.cpu_flags(str(tmp_path / "none")) == set()


def test_describe_and_mismatch_say_what_torch_runs_and_why():
    pinned = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}
    assert numerics.describe("AVX2", pinned) == "AVX2 (pinned, MKL_CBWR=AVX2)"
    assert numerics.describe("DEFAULT", {"ATEN_CPU_CAPABILITY": "default"}) == "DEFAULT (ATEN_CPU_CAPABILITY=default)"
    assert numerics.describe("AVX512", {}) == "AVX512 (native: not pinned)"
    assert numerics.mismatch("AVX2", pinned) is None
    assert numerics.mismatch("AVX512", {}) is None  # nothing asked for
    assert "torch runs its CPU kernels as AVX512, not ATEN_CPU_CAPABILITY=avx2" in numerics.mismatch("AVX512", pinned)


@pytest.mark.skipif(not {"avx2", "fma"} <= numerics.cpu_flags(), reason="the pin applies to x86 CPUs with AVX2 only")
def test_importing_genius_pins_torch_in_a_fresh_process():
    code = (
        "import genius, os, torch; "
        "print(os.environ['ATEN_CPU_CAPABILITY'], os.environ['MKL_CBWR'], torch.backends.cpu.get_cpu_capability())"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR")}
    done = subprocess.run([sys.executable, "-c", code], env=env | {"PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    assert done.stdout.split() == ["avx2", "AVX2", "AVX2"], done.stderr[-2000:]


def test_a_stage_warns_when_torch_loaded_before_the_pin(monkeypatch, capsys):
    # torch in this process has fixed its kernels already; a variable set now cannot change them
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default" if torch.backends.cpu.get_cpu_capability() != "DEFAULT" else "avx2")
    cli._warn_numerics()
    assert "genius: warning: torch runs its CPU kernels as" in capsys.readouterr().err


def test_the_environment_record_names_versions_lock_and_arithmetic():
    env = environment.environment(threads=2, dtype="float32", device="cpu")
    assert env["torch"] == torch.__version__ and env["python"] == sys.version.split()[0]
    assert env["device"] == "cpu" and env["threads"] == 2 and env["dtype"] == "float32"
    assert env["cpu_numerics"].startswith(torch.backends.cpu.get_cpu_capability())
    assert len(env["lock"]["hash"]) == 12
    json.dumps(env)  # it goes into JSON files and wandb's config


def test_lock_drift_lists_the_packages_installed_at_another_version(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text(
        f"torch=={torch.__version__} \\\n    --hash=sha256:00\nnumpy==0.0.1\nno-such-package==1.0\n# via torch\n"
    )
    record = environment.lock_record(lock)
    assert record["drift"] == [f"no-such-package 1.0 -> None", f"numpy 0.0.1 -> {__import__('numpy').__version__}"]
    assert environment.lock_record(tmp_path / "missing.txt") == {"hash": None, "drift": []}


def test_a_vendored_copy_later_on_sys_path_is_not_drift(tmp_path, monkeypatch):
    """Importing setuptools (vLLM does) appends its _vendor folder, with older copies
    of locked packages, to sys.path: the installed version is still the one `import` finds first."""
    import numpy

    lock = tmp_path / "lock.txt"
    lock.write_text(f"numpy=={numpy.__version__}\n")
    vendor = tmp_path / "_vendor"
    (vendor / "numpy-0.0.1.dist-info").mkdir(parents=True)
    (vendor / "numpy-0.0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: numpy\nVersion: 0.0.1\n")
    monkeypatch.setattr(sys, "path", [*sys.path, str(vendor)])
    assert environment.lock_record(lock)["drift"] == []
    monkeypatch.setattr(sys, "path", [str(vendor), *sys.path])  # first on the path: what import would find
    assert environment.lock_record(lock)["drift"] == [f"numpy {numpy.__version__} -> 0.0.1"]
