"""``train.compile``: the dense interaction arch of training steps under ``torch.compile``, eager fallback.

Only the arch (``RankingModel.arch``: ``(B, n, d)`` embeddings to logits) is compiled, never the
TorchRec modules: their sharded look-ups, input distribution and fused optimizers are FBGEMM kernels
already, and the train pipeline rewrites their forwards. Inductor fuses the arch's element-wise and
memory-bound work (LayerNorms, residual sums, ReLUs, concatenations, the copies around small matrix
products) into generated loops around the matmuls.

Compilation happens up front (:meth:`DenseArch.warm_up`): one forward and backward on a random
batch of the training shape, so a failure (no C++ compiler, an unsupported op) shows before the
first step, as one log line, and the run goes on eager. Validation and prediction call the arch eager:
their last batch has another size and they run in eval mode, each a recompilation for little gain.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.fx._symbolic_trace import is_fx_symbolic_tracing

from wukong.config import COMPILE_MODES


class DenseArch:
    """How the training module calls its interaction arch: eager (``mode="none"``) or compiled (``"dense"``).

    A plain object, not a module: the arch stays registered once, under ``model.arch``, so state
    dicts, checkpoints and exports are the same in both modes.

    Args:
        arch: the interaction arch.
        mode: a value of ``train.compile``.
        log: where the one-line reports go (compile time, or the failure and the fallback).
        backend: ``torch.compile``'s backend (inductor; tests pass others).
    """

    def __init__(
        self,
        arch: nn.Module,
        mode: str = "none",
        log: Callable[[str], None] = print,
        backend: str | Callable = "inductor",
    ) -> None:
        if mode not in COMPILE_MODES:
            raise ValueError(f"train.compile must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")
        self.arch = arch
        self.log = log
        self.compiled: Callable[[torch.Tensor], torch.Tensor] | None = None
        if mode == "dense":
            self.compiled = torch.compile(arch, backend=backend)

    @property
    def active(self) -> bool:
        """Whether training steps run the compiled arch (False when off, or after a fallback)."""
        return self.compiled is not None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # Eager in eval mode, and while TorchRec's train pipeline traces the model with torch.fx.
        if self.compiled is None or not self.arch.training or is_fx_symbolic_tracing():
            return self.arch(x)
        try:
            return self.compiled(x)
        except Exception as error:  # a recompilation that fails mid-run: finish the run eager
            self._fall_back(error)
        return self.arch(x)

    def warm_up(self, example: torch.Tensor, precision: contextlib.AbstractContextManager | None = None) -> None:
        """Compile now, forward and backward, on ``example`` (a random ``(B, n, d)`` batch of the
        training shape), leaving no trace: gradients go to ``example`` only (``autograd.grad``, so
        no parameter gradient and no DDP hook), and the RNG states and buffers (BatchNorm
        statistics) are restored. On failure, logs it and falls back to eager."""
        if self.compiled is None:
            return
        start = time.perf_counter()
        buffers = {name: b.detach().clone() for name, b in self.arch.named_buffers()}
        was_training = self.arch.training
        try:
            with torch.random.fork_rng(devices=[example.device] if example.device.type == "cuda" else []):
                self.arch.train()
                x = example.detach().requires_grad_(True)
                with precision or contextlib.nullcontext():
                    out = self.compiled(x).float()
                torch.autograd.grad(out.sum(), x)
        except Exception as error:
            self._fall_back(error)
        else:
            seconds = time.perf_counter() - start
            self.log(f"train.compile=dense: compiled the dense arch (forward and backward) in {seconds:.1f} s")
        finally:
            self.arch.train(was_training)
            with torch.no_grad():
                for name, b in self.arch.named_buffers():
                    b.copy_(buffers[name])

    def _fall_back(self, error: Exception) -> None:
        root: BaseException = error  # dynamo wraps the backend's own error (BackendCompilerFailed)
        while (inner := getattr(root, "inner_exception", None) or root.__cause__) is not None:
            root = inner
        first_line = (str(root).strip().splitlines() or [""])[0][:300]
        self.log(
            f"train.compile=dense: torch.compile of the dense arch failed ({type(root).__name__}: {first_line}); "
            "training continues eager (set train.compile=none to skip the attempt)"
        )
        self.compiled = None
