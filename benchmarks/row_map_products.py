"""The Wukong layer's row maps ``M X``, as the model computes them against three other forms.

``WukongLayer.row_maps`` multiplies X ``(B, n, d)`` by one stacked ``r × n`` matrix M (``Yᵀ``, the
LCB's ``W_L`` and a compressed residual's ``W_r``) as a batched ``bmm`` with M broadcast as a
stride-0 view; autograd then forms M's gradient as B small products summed over the batch. Three
other forms are timed against it, forward and backward (to X and M), on the layer shapes of the model
benchmark's Wukong points (``model_throughput.py``: d = 128, width-scaled to 1, 10 and 50
MFLOP/example; the first layer, whose residual is compressed, and the last):

- ``one mm``: one large product ``M · X'`` over a permuted copy ``X' = (n, B·d)``, and its permuted
  result back;
- ``einsum grad``: the same ``bmm`` forward, with M's gradient as one ``einsum('brd,bnd->rn')``;
- ``mm grad``: the same ``bmm`` forward, with M's gradient as one ``mm`` over permuted copies of the
  output's gradient and of X.

Interleaved, best of ``--repeats``; the table goes to docs/benchmarks.md.

    python benchmarks/row_map_products.py [--repeats 5] [--no-write]
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from benchmarks_doc import publish
from fm_products import best_interleaved, kernel_benchmark_args, measured_on
from tabulate import tabulate

from wukong.config import load_config
from wukong.model import build_arch
from wukong.model.scaling import config_for_flops

BEGIN, END = "<!-- row_map_products:begin -->", "<!-- row_map_products:end -->"
SIZES_MFLOPS = (1.0, 10.0, 50.0)
BATCH = 512


def broadcast(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The model's form: ``bmm`` with M broadcast over the batch."""
    return torch.bmm(m.expand(x.shape[0], *m.shape), x)


def one_mm(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """One ``(r, n) · (n, B·d)`` product over a permuted copy of X."""
    batch, n, d = x.shape
    return (m @ x.transpose(0, 1).reshape(n, batch * d)).view(-1, batch, d).transpose(0, 1)


class _BroadcastWithWeightGrad(torch.autograd.Function):
    """``bmm`` forward; X's gradient as in autograd, M's by :meth:`weight_grad` in one call."""

    @staticmethod
    def weight_grad(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @classmethod
    def forward(cls, ctx, m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(m, x)
        return broadcast(m, x)

    @classmethod
    def backward(cls, ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        m, x = ctx.saved_tensors
        return cls.weight_grad(grad, x), broadcast(m.t(), grad)


class _EinsumGrad(_BroadcastWithWeightGrad):
    @staticmethod
    def weight_grad(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("brd,bnd->rn", grad, x)


class _MmGrad(_BroadcastWithWeightGrad):
    @staticmethod
    def weight_grad(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        rows, n = grad.shape[1], x.shape[1]
        return grad.transpose(0, 1).reshape(rows, -1) @ x.transpose(0, 1).reshape(n, -1).t()


FORMS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "now: bmm, M broadcast": broadcast,
    "one mm": one_mm,
    "einsum grad": _EinsumGrad.apply,
    "mm grad": _MmGrad.apply,
}


def layer_shapes() -> list[tuple[str, int, int, int]]:
    """``(label, r, n, d)`` of the first and last layer of each model-benchmark Wukong point."""
    cfg = load_config("default", ["data.cardinality=10000"])
    schema = cfg.data.synthetic_schema()
    shapes = []
    for mflops in SIZES_MFLOPS:
        model = config_for_flops("wukong", schema, cfg.model, mflops)
        arch = build_arch("wukong", len(schema.sparse) + model.num_dense_embeddings, model)
        for which, layer in (("first", arch.layers[0]), ("last", arch.layers[-1])):
            x = torch.zeros(1, layer.num_inputs, layer.dim)
            rows = sum(part.shape[1] for part in layer.row_maps(x) if part is not None and part is not x)
            shapes.append((f"{mflops:g} MFLOP/example, {which} layer", rows, layer.num_inputs, layer.dim))
    return shapes


def step(
    form: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], m: torch.Tensor, x: torch.Tensor, grad: torch.Tensor
) -> None:
    """Forward and backward with a dense output gradient (``sum().backward()`` would send a stride-0
    one, which some forms copy and others do not, and time that instead of the products)."""
    form(m, x).backward(grad)


def main() -> None:
    args = kernel_benchmark_args(__doc__)
    rows = []
    for label, r, n, d in layer_shapes():
        m = torch.randn(r, n, requires_grad=True)
        x = torch.randn(BATCH, n, d, requires_grad=True)
        reference = broadcast(m, x)
        grad = torch.randn_like(reference)
        grads = torch.autograd.grad(reference, (m, x), grad)
        for form in FORMS.values():
            out = form(m, x)
            torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-3)
            for got, want in zip(torch.autograd.grad(out, (m, x), grad), grads):
                torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-2)
        best = best_interleaved({name: partial(step, form, m, x, grad) for name, form in FORMS.items()}, args.repeats)
        now = best["now: bmm, M broadcast"]
        gflops = 3 * 2 * BATCH * r * n * d / now / 1e6
        rows.append(
            [label, f"{r}×{n} · {BATCH}×{n}×{d}"]
            + [f"{best[name]:.2f}" for name in FORMS]
            + [f"{gflops:.0f}"]
            + [f"{best[name] / now:.2f}x" for name in list(FORMS)[1:]]
        )
        print(rows[-1], flush=True)
    headers = ["layer", "M · X", *(f"{name}: ms" for name in FORMS), "now: GFLOP/s"]
    headers += [f"{name} vs now (time)" for name in list(FORMS)[1:]]
    table = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    header = (
        f"{measured_on()}, fp32: forward and backward of `M X` (to M and X), batch {BATCH}, best of "
        f"{args.repeats} interleaved timings, train.malloc=retain. GFLOP/s counts forward and backward as 3 × "
        "the forward product."
    )
    publish(BEGIN, END, header, table, write=not args.no_write)


if __name__ == "__main__":
    main()
