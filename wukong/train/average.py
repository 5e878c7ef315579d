r"""An exponential moving average of the dense weights (``train.ema_decay``), the weights a run is judged by.

After every optimizer step ``t`` (1-based), each averaged tensor ``a`` follows its parameter ``w``:

.. math::
    a_t = \beta_t\, a_{t-1} + (1 - \beta_t)\, w_t, \qquad
    \beta_t = \min\Big(\beta, \frac{t - 1}{t}\Big)

so :math:`a_t` is the plain mean of :math:`w_1 \dots w_t` until the window :math:`1/(1-\beta)` is
reached, then the exponential average. The random start never enters it. (A constant decay from
:math:`a_0 = w_0` keeps :math:`\beta^t` of the start after t steps, 28% after 628 steps at 0.998;
TensorFlow's warm-up, :math:`\min(\beta, (1+t)/(10+t))`, holds the decay near 0.99 for the first
thousand steps. On MovieLens both did worse for Wukong or no better: docs/results.md.)

Training itself always steps the raw weights; validation, checkpoints' model weights, the exported
model and everything downstream of it (evaluate, serve, warm starts) see the averaged ones. So a
checkpoint is written *swapped*: its ``model`` holds the averages and ``training_weights`` the raw
weights of the averaged parameters, and loading one swaps back (:meth:`WeightAverage.loaded`).

Averaged: the parameters of the dense optimizer (the interaction arch and MLPs, and replicated tables
under ``replicated_tables=dense``). Tables trained by an embedding optimizer are not averaged: a
sharded table is updated inside the backward pass, one looked-up row at a time, and averaging all of
its rows every step would cost a pass over the whole table per step. Buffers (BatchNorm's running
statistics) are not averaged either: the averaged weights are used with the raw model's statistics.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch

TRAINING_WEIGHTS = "training_weights"  # the checkpoint's key for the raw weights of averaged parameters


class WeightAverage:
    def __init__(self, params: Mapping[str, torch.Tensor], decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"the average's decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.params = dict(params)
        self.averages = {name: p.detach().clone() for name, p in self.params.items()}
        self.applied = False  # True inside applied_weights, while the parameters hold the averages
        # The same tensors as lists, for one fused update per step (both are only ever updated in place).
        self._param_list = [p.detach() for p in self.params.values()]
        self._average_list = list(self.averages.values())

    def decay_at(self, step: int) -> float:
        """:math:`\\beta_t` for the update after optimizer step ``step`` (1-based)."""
        return min(self.decay, (step - 1) / step)

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Fold the weights of optimizer step ``step`` into the average."""
        if self.applied:
            raise RuntimeError("the average is applied: training must not step the averaged weights")
        torch._foreach_lerp_(self._average_list, self._param_list, 1.0 - self.decay_at(step))

    @torch.no_grad()
    def reset(self) -> None:
        """Start the average afresh at the current weights (after loading weights from elsewhere)."""
        for name, p in self.params.items():
            self.averages[name].copy_(p)

    @torch.no_grad()
    def _exchange(self) -> None:
        """Exchange the parameters' values with :attr:`averages`, in place (their storage stays)."""
        for name, p in self.params.items():
            held = p.detach().clone()
            p.detach().copy_(self.averages[name])
            self.averages[name].copy_(held)

    @contextmanager
    def applied_weights(self) -> Iterator[None]:
        """The parameters hold the averages inside, their own values again after (even on error)."""
        self._exchange()
        self.applied = True
        try:
            yield
        finally:
            self._exchange()
            self.applied = False

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        """The tensors a checkpoint saves under :data:`TRAINING_WEIGHTS` and loads into in place. Saved
        inside :meth:`applied_weights` they hold the raw weights, and so they do after a load, which
        puts the averages in the parameters: :meth:`loaded` then swaps the two back."""
        return self.averages

    def loaded(self) -> None:
        """After loading a checkpoint (averages in the parameters, raw weights in :attr:`averages`):
        training goes on from the raw weights, the averages from the saved ones."""
        self._exchange()
