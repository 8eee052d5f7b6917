"""Half precision: which compute dtype the network runs in on this machine, and why.

The paper trains in float32 on two GTX 580s (section 3.2). Newer hardware multiplies 16-bit
floats faster; Keras's mixed policies (`mixed_bfloat16`, `mixed_float16`) compute the layers in
16 bits while the variables, and so the checkpoints, stay float32. The layers of
`alexnet_tf.model.layers` honour any of them (LRN runs in float32 inside a half-precision graph).

`choose(requested, cpu_flags=..., gpus=...)` is a pure function of the machine's features, so
tests can fake them; `resolve(requested)` reads this machine's. `--mixed_precision=auto` picks:

* a GPU of compute capability >= 8.0 (Ampere and later: bfloat16 tensor cores, float32's range,
  so no loss scaling): bfloat16;
* an older GPU: float32. float16 would use its tensor cores (compute capability 7.x), but
  float16's range (max 65504) can overflow forward activations of the paper's unscaled 0-255
  inputs, which loss scaling does not protect; pass `--mixed_precision=float16` to choose it;
* a CPU with bfloat16 instructions (`amx_bf16` or `avx512_bf16` in /proc/cpuinfo's flags:
  Intel Sapphire Rapids and later, AMD Zen 4 and later): bfloat16. Measured (BUILD.md, "Half
  precision"): ~2.1x float32's training speed on a Xeon with AMX, and 1.6x (train) and 1.5x
  (inference) float32's per CPU-second on an AMD EPYC with AVX512_BF16 and no AMX;
* any other CPU, and any machine whose flags cannot be read (not Linux): float32, the safe side.
  So is a CPU whose oneDNN is capped below its bfloat16 instructions by `ONEDNN_MAX_CPU_ISA`
  (e.g. `AVX512_CORE`): oneDNN then emulates bfloat16 with float32 instructions, measured at a
  third of float32's speed (BUILD.md); without AVX-512 TensorFlow falls back to its own kernels,
  as for float16 (not measured). float16 is never picked on a CPU:
  oneDNN has float16 kernels only with AVX512_FP16; TensorFlow's own are several times slower
  (a batch-2 training step: 2.5 s against 0.4 s in bfloat16, AMD EPYC).

    python -m alexnet_tf.train --flagfile=configs/demo.cfg --mixed_precision=auto
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterable, Iterator, Sequence

POLICIES = ("none", "auto", "float16", "bfloat16")
HALF = ("float16", "bfloat16")
# CPU flags that make bfloat16 training faster than float32 (measured; see the module docstring):
# either one is enough.
CPU_BFLOAT16_FLAGS = ("amx_bf16", "avx512_bf16")
GPU_BFLOAT16_CAPABILITY = (8, 0)  # Ampere: bfloat16 tensor cores
CPUINFO = "/proc/cpuinfo"
# oneDNN's ISA caps (its ONEDNN_MAX_CPU_ISA) below AVX512_CORE_BF16: bfloat16 without its
# instructions. Caps without "AMX" in the name also leave AMX unused.
ONEDNN_ISAS_WITHOUT_BFLOAT16 = (
    "SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Choice:
    """A resolved precision policy.

    Attributes:
        requested: what was asked for, one of POLICIES.
        policy: what runs: "none" (float32), "float16" or "bfloat16".
        reason: one sentence on why, for the log.
        warning: set when an explicit choice will run slower than float32 here.
    """

    requested: str
    policy: str
    reason: str
    warning: str | None = None

    @property
    def keras_policy(self) -> str:
        """The Keras global policy name: "float32", "mixed_float16" or "mixed_bfloat16"."""
        return keras_policy(self.policy)

    @property
    def compute_dtype(self) -> str:
        return "float32" if self.policy == "none" else self.policy

    def log_line(self) -> str:
        return (
            f"mixed precision: --mixed_precision={self.requested} runs {self.compute_dtype} "
            f"({self.reason})"
        )


def keras_policy(policy: str) -> str:
    """ "none" → "float32"; "float16"/"bfloat16" → Keras's mixed policy of that dtype."""
    if policy not in ("none", *HALF):
        raise ValueError(f"policy must be one of ('none', {HALF}); received {policy!r}")
    return "float32" if policy == "none" else f"mixed_{policy}"


@contextlib.contextmanager
def policy_scope(policy: str) -> Iterator[None]:
    """Layers built inside compute in `policy` ("none", "float16", "bfloat16"), variables float32.

    Keras reads its global policy when a layer is constructed; the previous one comes back after.
    """
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(keras_policy(policy))
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def cpu_has_fast_bfloat16(flags: Iterable[str]) -> bool:
    """Whether a CPU with these /proc/cpuinfo flags trains faster in bfloat16 than in float32."""
    return bool(set(CPU_BFLOAT16_FLAGS) & set(flags))


def choose(
    requested: str,
    *,
    cpu_flags: Sequence[str] | None,
    gpus: Sequence[tuple[int, int]] = (),
) -> Choice:
    """Resolves `requested` for a machine with these features.

    Args:
        requested: one of POLICIES.
        cpu_flags: the CPU's /proc/cpuinfo flags, or None where they cannot be read.
        gpus: the compute capability (major, minor) of each GPU the run uses; empty on a CPU.

    Raises:
        ValueError: `requested` is not one of POLICIES.
    """
    if requested not in POLICIES:
        raise ValueError(f"--mixed_precision must be one of {POLICIES}; received {requested!r}")
    if requested == "none":
        return Choice(requested, "none", "float32 asked for")
    if gpus:
        oldest = min(gpus)
        name = f"GPU compute capability {oldest[0]}.{oldest[1]}"
        modern = oldest >= GPU_BFLOAT16_CAPABILITY
        if requested == "auto":
            if modern:
                return Choice(requested, "bfloat16", f"{name} >= 8.0 has bfloat16 tensor cores")
            return Choice(requested, "none", f"{name} < 8.0 has no bfloat16 tensor cores")
        warning = None
        if requested == "bfloat16" and not modern:
            warning = (
                f"--mixed_precision=bfloat16 on a {name} (< 8.0, no bfloat16 tensor cores) "
                "will be slower than float32; --mixed_precision=auto picks float32 here"
            )
        return Choice(requested, requested, f"{requested} asked for on a {name}", warning)
    if cpu_flags is None:
        native, features = False, "CPU features unknown (no /proc/cpuinfo)"
    else:
        native = cpu_has_fast_bfloat16(cpu_flags)
        have = [f for f in ("amx_bf16", "avx512_bf16") if f in cpu_flags]
        features = f"CPU with {', '.join(have) if have else 'neither amx_bf16 nor avx512_bf16'}"
    if requested == "auto":
        if native:
            return Choice(requested, "bfloat16", f"{features}: bfloat16 runs faster")
        return Choice(requested, "none", f"{features}: bfloat16 would be emulated, slower")
    warning = None
    if requested == "float16" or not native:
        warning = (
            f"--mixed_precision={requested} on a {features} will be slower than float32 "
            f"(no native {requested} kernels); "
            f"--mixed_precision=auto picks {'bfloat16' if native else 'float32'} here"
        )
    return Choice(requested, requested, f"{requested} asked for on a {features}", warning)


def read_cpu_flags(path: str = CPUINFO) -> list[str] | None:
    """The first processor's flags in /proc/cpuinfo, or None where there is no such file."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "flags":
                    return value.split()
    except OSError:
        return None
    return None


def usable_cpu_flags(flags: Sequence[str] | None, onednn_max_isa: str | None) -> list[str] | None:
    """The CPU's flags less the bfloat16 ones a `ONEDNN_MAX_CPU_ISA` cap keeps oneDNN from using."""
    cap = (onednn_max_isa or "").strip().upper()
    if flags is None or cap in ("", "ALL", "DEFAULT"):
        return None if flags is None else list(flags)
    unusable = {"amx_bf16"} if "AMX" not in cap else set()
    if cap in ONEDNN_ISAS_WITHOUT_BFLOAT16:
        unusable.add("avx512_bf16")
    return [f for f in flags if f not in unusable]


def gpu_capabilities() -> list[tuple[int, int]]:
    """The compute capability of each GPU TensorFlow sees (empty without GPUs)."""
    import tensorflow as tf

    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        capabilities.append(tuple(capability) if capability else (0, 0))
    return capabilities


def resolve(requested: str) -> Choice:
    """`choose` for this machine: its GPUs if it has any, else its CPU's flags (as oneDNN may use
    them: see `usable_cpu_flags`)."""
    gpus = gpu_capabilities() if requested != "none" else []
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA")
    flags = read_cpu_flags()
    usable = usable_cpu_flags(flags, cap)
    choice = choose(requested, cpu_flags=usable, gpus=gpus)
    if usable != flags and not gpus:
        choice = dataclasses.replace(choice, reason=f"{choice.reason}; ONEDNN_MAX_CPU_ISA={cap}")
    return choice
