r"""Where a training step's time goes: ``torch.profiler`` events of whole steps, attributed to phases.

A step is one ``ProfilerStep`` span of the profiler (``prof.step()`` after every training step,
validation and checkpoint included, through :attr:`wukong.train.loop.Trainer.step_hooks`). Every
event inside it is attributed to a phase by the innermost enclosing label that names one
(:data:`LABELS`: the trainer's ``wukong.*`` labels, TorchRec's train-pipeline labels, and inside a
backward pass the FBGEMM embedding kernels and DDP's gradient reducer), except that validation,
checkpoints and logging keep all their insides (:data:`OUTER_PHASES`); each event's *self* time
goes to its phase, so the phases partition the step exactly:

.. math::
    T_{\text{step}} = \sum_{\text{phase}} T_{\text{phase}},\qquad
    T_{\text{phase}} = \sum_{e\,\in\,\text{phase}} \big(t_e - \textstyle\sum_{c \in \text{children}(e)} t_c\big)

Time no label covers (the loop's own Python, learning-rate updates) is ``other``. Only the thread
that runs the step is counted (its wall time); CPU kernels' own worker threads run inside its ops.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wukong.train.loop import Trainer

# (phase, its description in tables)
PHASES: tuple[tuple[str, str], ...] = (
    ("input", "input: batch read, KJT build, input distribution"),
    ("embedding", "embedding look-ups (forward)"),
    ("dense_forward", "dense forward (arch + loss)"),
    ("dense_backward", "backward of the dense arch and embedding glue"),
    ("embedding_backward", "embedding backward + fused optimizer update"),
    ("grad_sync", "dense gradient reduction (DDP)"),
    ("optimizer", "optimizer steps and zero_grad"),
    ("validation", "validation (amortised)"),
    ("checkpoints", "checkpoints (amortised)"),
    ("logging", "logging, host syncs (loss.item)"),
    ("other", "other (loop, learning rates)"),
)
PHASE_NAMES = tuple(name for name, _ in PHASES)

# Event-name prefixes that start a phase (the innermost one wins).
LABELS: tuple[tuple[str, str], ...] = (
    ("wukong.validate", "validation"),
    ("wukong.checkpoint", "checkpoints"),
    ("wukong.log", "logging"),
    ("wukong.input", "input"),
    ("## copy_batch_to_gpu", "input"),
    ("## inplace_copy_batch_to_gpu", "input"),
    ("## next_batch", "input"),
    ("## load_batch", "input"),
    ("## start_sparse_data_dist", "input"),
    ("## wait_sparse_data_dist", "input"),
    ("## wait_for_batch", "input"),
    ("wukong.embedding", "embedding"),
    ("wukong.dense_forward", "dense_forward"),
    ("wukong.backward", "dense_backward"),
    ("## backward", "dense_backward"),
    ("wukong.optimizer", "optimizer"),
    ("## optimizer", "optimizer"),
    ("## zero_grad", "optimizer"),
)
# Inside a backward pass: substrings of the events that belong elsewhere.
BACKWARD_PARTS: tuple[tuple[str, str], ...] = (
    ("SplitLookupFunction", "embedding_backward"),  # TorchRec's autograd node around FBGEMM's fused kernels
    ("split_embedding_backward", "embedding_backward"),
    ("reducer", "grad_sync"),
    ("allreduce", "grad_sync"),
    ("all_reduce", "grad_sync"),
)


# Phases that keep everything inside them (a validation's forward is validation, not dense forward),
# except a checkpoint saved within a validation.
OUTER_PHASES = ("validation", "checkpoints", "logging")


def phase_of(name: str, enclosing: str) -> str:
    """The phase of an event called ``name`` inside an event of phase ``enclosing``."""
    if enclosing in OUTER_PHASES:
        return "checkpoints" if name.startswith("wukong.checkpoint") else enclosing
    for prefix, phase in LABELS:
        if name.startswith(prefix):
            return phase
    if enclosing == "dense_backward":
        for part, phase in BACKWARD_PARTS:
            if part in name:
                return phase
    return enclosing


def op_name(name: str) -> str:
    """An event's name as tables show it: TorchRec's numbered labels without their batch number, and
    every call of a compiled graph (inductor's generated kernels) under one name."""
    if name.startswith("## Call CompiledFxGraph"):
        return "inductor-generated kernels"
    return re.sub(r"^## (.*?) \d+ ##$", r"## \1 ##", name)


@dataclass(frozen=True)
class StepProfile:
    """Milliseconds per step of every phase, and of every op (event name) within each phase, averaged
    over ``steps`` profiled steps."""

    steps: int
    ms: dict[str, float]
    ops: dict[str, dict[str, float]]
    step_ms: float  # the steps' own mean duration, which the phases add up to

    def top_ops(self, phases: Sequence[str], count: int) -> list[tuple[str, float]]:
        """The ``count`` ops with the most self time (ms/step) over ``phases``."""
        merged: dict[str, float] = {}
        for phase in phases:
            for op, ms in self.ops[phase].items():
                merged[op] = merged.get(op, 0.0) + ms
        return sorted(merged.items(), key=lambda item: -item[1])[:count]

    @property
    def total_ms(self) -> float:
        return sum(self.ms.values())

    def share(self, phase: str) -> float:
        return self.ms[phase] / self.total_ms if self.total_ms else 0.0


def attribute(events: Iterable, step_prefix: str = "ProfilerStep") -> StepProfile:
    """Phases of the profiled steps in ``events`` (``prof.events()``: FunctionEvents with their tree).

    Raises:
        ValueError: when no event is a step (the profiler saw no ``prof.step()``).
    """
    steps = [e for e in events if e.name.startswith(step_prefix)]
    if not steps:
        raise ValueError(f"no {step_prefix}* events: call prof.step() after every training step")
    ops: dict[str, dict[str, float]] = {name: {} for name in PHASE_NAMES}
    stack: list[tuple[object, str]] = [(step, "other") for step in steps]
    while stack:
        event, enclosing = stack.pop()
        phase = phase_of(event.name, enclosing)
        ms = event.self_cpu_time_total / 1e3 / len(steps)
        name = op_name(event.name)
        ops[phase][name] = ops[phase].get(name, 0.0) + ms
        stack.extend((child, phase) for child in event.cpu_children)
    step_ms = sum(step.cpu_time_total for step in steps) / 1e3 / len(steps)
    return StepProfile(len(steps), {name: sum(ops[name].values()) for name in PHASE_NAMES}, ops, step_ms)


def profile_fit(trainer: Trainer, skip: int, steps: int) -> StepProfile:
    """Run ``trainer.fit()`` and profile ``steps`` training steps after the first ``skip`` (at least 1:
    the profiler warms up on the last skipped one). The run must last ``skip + steps`` steps or more."""
    from torch.profiler import ProfilerActivity, profile, schedule

    if skip < 1:
        raise ValueError("skip at least one step: the profiler warms up on it")
    result: list[StepProfile] = []
    when = schedule(wait=skip - 1, warmup=1, active=steps, repeat=1)  # step index i ends training step i + 1
    with profile(
        activities=[ProfilerActivity.CPU],
        schedule=when,
        on_trace_ready=lambda prof: result.append(attribute(prof.events())),
    ) as prof:
        trainer.step_hooks.append(prof.step)
        try:
            trainer.fit()
        finally:
            trainer.step_hooks.remove(prof.step)
    if not result:
        raise ValueError(f"the run ended before step {skip + steps}: nothing was profiled")
    return result[0]


def format_profile(profiles: Sequence[tuple[str, StepProfile]], fmt: str = "github") -> str:
    """One row per phase, ``ms/step`` and ``%`` for each labelled profile, and the total."""
    from tabulate import tabulate

    headers = ["phase"] + [f"{label} {unit}" for label, _ in profiles for unit in ("ms/step", "%")]
    rows = []
    for name, description in PHASES:
        row = [description]
        for _, profile in profiles:
            row += [f"{profile.ms[name]:.1f}", f"{100 * profile.share(name):.1f}%"]
        rows.append(row)
    total = ["**total**"]
    for _, profile in profiles:
        total += [f"{profile.total_ms:.1f}", "100%"]
    return tabulate([*rows, total], headers=headers, tablefmt=fmt, disable_numparse=True)


DENSE_PHASES = ("dense_forward", "dense_backward")


def format_ops(profiles: Sequence[tuple[str, StepProfile]], count: int = 12, fmt: str = "github") -> str:
    """The ``count`` ops with the most self time in the dense forward and backward of each profile:
    ``op: ms/step (share of those phases)``, one column per profile."""
    from tabulate import tabulate

    columns = []
    for _, profile in profiles:
        dense = sum(profile.ms[phase] for phase in DENSE_PHASES) or 1.0
        columns.append([f"{op} {ms:.1f} ({100 * ms / dense:.0f}%)" for op, ms in profile.top_ops(DENSE_PHASES, count)])
    rows = [[i + 1] + [column[i] if i < len(column) else "" for column in columns] for i in range(count)]
    headers = ["#"] + [f"{label}: op, ms/step (% of dense)" for label, _ in profiles]
    return tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)
