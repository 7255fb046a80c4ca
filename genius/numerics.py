"""Pinned CPU numerics: the same floating-point results on every x86 CPU with AVX2, set before torch loads.

torch picks its CPU kernels by the instruction set it finds (AVX-512, AVX2, or plain C++),
and MKL picks its matrix-product code the same way; each choice rounds differently. The
toy's skill appears suddenly in pre-training, so rounding alone moved its base from 30.0%
to 44.8% greedy between an AVX2 and an AVX-512 machine (issue 21). Importing `genius`
therefore sets, unless the user set them:

- `ATEN_CPU_CAPABILITY=avx2`: torch's vectorised kernels. Measured on the toy: `default`
  (plain C++) gives other weights from the first steps on, `avx2` the same as native AVX2.
- `MKL_CBWR=AVX2`: MKL's conditional numerical reproducibility on its AVX2 code path.
  On this AVX2 machine it changes no weight (MKL_CBWR=COMPATIBLE does: MKL's path matters);
  on an AVX-512 CPU it keeps MKL's GEMMs on the path an AVX2 CPU takes.

Both are read once, when torch and MKL start, so this runs from `genius/__init__.py`, before
any genius module imports torch; processes a stage starts inherit them. Only x86 CPUs with
AVX2 and FMA are pinned: torch does not check, and a capability the CPU lacks dies with
SIGILL (measured: `avx512` on this AVX2 machine). ARM and older x86 keep torch's own
choice, and so their own numbers (README). `GENIUS_CPU_NUMERICS=native` pins nothing.
"""

from __future__ import annotations

import os
import platform

PINNED = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}
OPT_OUT = "GENIUS_CPU_NUMERICS"  # `native`: leave torch's and MKL's own choice


def cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags as Linux lists them; empty where there is no /proc/cpuinfo."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def pin(environ=os.environ, machine: str | None = None, flags: set[str] | None = None) -> dict[str, str]:
    """Set the pinned variables the user has not set; return those it set."""
    if environ.get(OPT_OUT) == "native":
        return {}
    if (machine or platform.machine()).lower() not in ("x86_64", "amd64"):
        return {}
    if not {"avx2", "fma"} <= (cpu_flags() if flags is None else flags):
        return {}
    chosen = {key: value for key, value in PINNED.items() if key not in environ}
    environ.update(chosen)
    return chosen


def describe(capability: str, environ=os.environ) -> str:
    """One phrase for the record: torch's CPU capability and how it came to be.

    `capability`: torch.backends.cpu.get_cpu_capability() ("AVX2", "AVX512", "DEFAULT", ...).
    """
    asked = environ.get("ATEN_CPU_CAPABILITY")
    if environ.get(OPT_OUT) == "native" or asked is None:
        return f"{capability} (native: not pinned)"
    how = "pinned" if asked == PINNED["ATEN_CPU_CAPABILITY"] else f"ATEN_CPU_CAPABILITY={asked}"
    mkl = environ.get("MKL_CBWR")
    return f"{capability} ({how}" + (f", MKL_CBWR={mkl})" if mkl else ")")


def mismatch(capability: str, environ=os.environ) -> str | None:
    """Why torch does not run the capability asked for, or None when it does.

    torch reads ATEN_CPU_CAPABILITY once: a program that imported torch before genius runs
    torch's native choice whatever the variable says now.
    """
    asked = environ.get("ATEN_CPU_CAPABILITY")
    if asked is None or environ.get(OPT_OUT) == "native" or capability.lower() == asked.lower():
        return None
    return (
        f"torch runs its CPU kernels as {capability}, not ATEN_CPU_CAPABILITY={asked}: torch was imported before "
        "genius (or the variable was set after); numbers will differ from README's. Import genius first, "
        "or run through `genius` / `make`"
    )
