"""The interaction arch's compute precision in training and validation (``train.precision``).

``bf16`` runs the dense arch under ``torch.autocast(dtype=bfloat16)``: its matrix products
(``linear``, ``mm``, ``bmm``, ``einsum``'s products) take bf16 inputs and accumulate in fp32,
while the parameters and their gradients, the embeddings, the loss and the optimizer states stay
fp32 (mixed precision without loss scaling: bf16 has fp32's exponent range).
Normalisations and reductions run in fp32 under autocast's own rules.

``auto`` picks bf16 on GPUs and fp32 on CPUs. A CPU computes bf16 products fast only with AMX
tiles (Intel Sapphire Rapids and later: about 7x its fp32 matmul peak on this project's hosts);
without them bf16 products are emulated and slower than fp32, so ``bf16`` on such a CPU is allowed
but logged. The exported model is fp32 weights either way: ``wukong evaluate`` and serving run it
in fp32, so their AUC can differ from the bf16 validation's in the fourth digit.
"""

from __future__ import annotations

import contextlib

import torch


def resolve_precision(precision: str, device: torch.device) -> str:
    """``fp32`` or ``bf16``: what ``train.precision`` means on ``device`` (``auto``: bf16 on CUDA only)."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AMX tiles)."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe and probe())


def precision_note(precision: str, device: torch.device) -> str | None:
    """A line for the log when the chosen precision is likely slow on this device, else None."""
    if precision == "bf16" and device.type == "cpu" and not cpu_has_fast_bf16():
        return (
            "train.precision=bf16 on a CPU without AMX: bf16 products are emulated there and usually "
            "slower than fp32 (train.precision=fp32 to compare)"
        )
    return None


def autocast(precision: str, device_type: str) -> contextlib.AbstractContextManager:
    """The context the dense arch runs in: bf16 autocast on ``device_type``, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
