"""The CPU a model is quantized for and the CPU it runs on. Standard library only.

x86 integer kernels without VNNI (AVX2, plain AVX-512) multiply u8 activations by s8 weights with
``vpmaddubsw``, whose 16-bit intermediate saturates: full 8-bit weights then lose most of their precision
(a tiny BERT's dynamic INT8 output fell to 8.9 dB SQNR on an AVX2-only EPYC, 26 dB with 7-bit weights).
ONNX Runtime's quantization docs recommend ``reduce_range`` (7-bit weights) or U8U8 there. VNNI
(``vpdpbusd``, AVX-512 VNNI or AVX-VNNI) accumulates in 32 bits and arm64 uses its dot-product
instructions, so both keep full 8-bit weights.

A quantization *target* names the CPU family the model is meant for:

- ``avx2``: any x86-64 CPU without VNNI (and the safe choice for "any x86"): 7-bit weights;
- ``avx512-vnni``: x86-64 with VNNI (AVX-512 VNNI or AVX-VNNI): full 8-bit weights;
- ``arm64``: 64-bit ARM: full 8-bit weights;
- ``auto``: the machine that quantizes.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from edgepack.errors import EdgepackError

TARGETS = ("auto", "avx2", "avx512-vnni", "arm64")


@dataclass(frozen=True)
class CpuInfo:
    """What the INT8 kernels care about on one machine."""

    model: str
    arch: str  # x86_64 | arm64 | other machine name
    avx2: bool = False
    avx512: bool = False
    vnni: bool = False  # AVX-512 VNNI or AVX-VNNI: u8 x s8 dot products accumulate without saturating
    amx: bool = False

    @property
    def target(self) -> str:
        """The quantization target that fits this CPU."""
        if self.arch == "arm64":
            return "arm64"
        return "avx512-vnni" if self.vnni else "avx2"

    def describe(self) -> str:
        """One line for reports: model and the features INT8 speed and accuracy depend on."""
        if self.arch != "x86_64":
            return f"{self.model} ({self.arch})"
        feats = [n for n, on in (("AVX2", self.avx2), ("AVX-512", self.avx512), ("VNNI", self.vnni),
                                 ("AMX", self.amx)) if on]
        no = [n for n, on in (("AVX-512", self.avx512), ("VNNI", self.vnni)) if not on]
        text = ", ".join(feats) or "no AVX2"
        return f"{self.model} ({text}{'; no ' + ', no '.join(no) if no else ''})"

    def to_dict(self) -> dict:
        return {"model": self.model, "arch": self.arch, "avx2": self.avx2, "avx512": self.avx512,
                "vnni": self.vnni, "amx": self.amx, "target": self.target, "description": self.describe()}


def parse_cpuinfo(text: str, machine: str) -> CpuInfo:
    """CpuInfo from the text of /proc/cpuinfo (Linux) and ``platform.machine()``."""
    arch = {"amd64": "x86_64", "x86_64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(machine.lower(),
                                                                                             machine.lower())
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    model = model or platform.processor() or machine or "unknown CPU"
    return CpuInfo(
        model=model, arch=arch, avx2="avx2" in flags, avx512="avx512f" in flags,
        vnni=bool({"avx512_vnni", "avx_vnni"} & flags), amx=bool({"amx_int8", "amx_tile"} & flags),
    )


@lru_cache(maxsize=1)
def host_cpu() -> CpuInfo:
    """This machine's CPU (read once per process)."""
    machine = platform.machine()
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:  # not Linux: name and architecture only
        text = ""
    return parse_cpuinfo(text, machine)


def check_target(target: str) -> None:
    """Refuse a target name that is not one of TARGETS."""
    if target not in TARGETS:
        raise EdgepackError(f"unknown target_cpu {target!r}; choose one of {', '.join(TARGETS)}")


def resolve_target(target: str, host: CpuInfo | None = None) -> str:
    """``target`` with ``auto`` replaced by the host's target; unknown names are refused."""
    check_target(target)
    return (host or host_cpu()).target if target == "auto" else target


def needs_reduce_range(target: str) -> bool:
    """Whether INT8 weights for ``target`` must be 7-bit (x86 without VNNI saturates with 8-bit)."""
    return resolve_target(target) == "avx2"


def int8_mismatch(reduce_range: bool | None, weight_type: str, host: CpuInfo | None = None) -> str | None:
    """Why an INT8 model quantized with these settings loses accuracy on ``host``, or None if it does not."""
    host = host or host_cpu()
    if host.arch != "x86_64" or host.vnni or reduce_range or weight_type != "qint8":
        return None
    return (f"this CPU ({host.describe()}) has no VNNI: its u8 x s8 INT8 kernels saturate on full 8-bit "
            "weights, so this model's outputs may be far off; re-quantize it with --target-cpu avx2")
