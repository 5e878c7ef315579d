"""The FMB's two products ``X (Xᵀ Y)``, as the model computes them against two earlier formulations.

``FactorizationMachineBlock.interactions`` computes ``Zᵀ = Yᵀ X`` first, with a static Y broadcast
as a stride-0 view, then ``X (Zᵀ)ᵀ``, both batched: ``bmm(X, bmm(Yᵀ_b, X)ᵀ)``. The first earlier
form called ``matmul(Xᵀ, Y)`` with a 2-D Y, which folds the batch into the rows of a 2-D product and
so first copies ``Xᵀ`` into a contiguous ``(B·d, n)`` block. The second, ``bmm(X, bmm(Xᵀ, Y_b))``,
has no copy forward, but the gradient of its first product reaches X transposed, and adding it to
the second product's (a strided sum over the whole ``(B, n, d)`` block) cost more than either product
at d = 128; ``Yᵀ X`` sends both gradients back in X's own layout. All three are timed forward and
backward on the shapes of the model benchmark's Wukong points (d = 128, n = 27) and of the public
reference's config (d = 16, n = 11 and its 80-row layers), interleaved, best of ``--repeats``; the
table goes to docs/benchmarks.md.

    python benchmarks/fm_products.py [--repeats 5] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import time
from collections.abc import Callable
from functools import partial

import torch
from benchmarks_doc import cpu_name, publish
from tabulate import tabulate

from wukong.malloc import configure_malloc
from wukong.model.blocks import FactorizationMachineBlock

BEGIN, END = "<!-- fm_products:begin -->", "<!-- fm_products:end -->"
# (label, B, n, d, k)
SHAPES = [
    ("Wukong 1 MFLOP/example, batch 512", 512, 27, 128, 5),
    ("Wukong 10 MFLOP/example, batch 512", 512, 27, 128, 18),
    ("reference config, layer 1, batch 4096", 4096, 11, 16, 8),
    ("reference config, layers 2-3, batch 4096", 4096, 80, 16, 8),
]


def folded(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The first formulation (the baseline): ``matmul`` with a 2-D Y copies ``Xᵀ`` to fold the batch."""
    return torch.matmul(x, torch.matmul(x.transpose(1, 2), y))


def transposed_first(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The second: ``Xᵀ Y`` first, batched over a broadcast Y."""
    return torch.bmm(x, torch.bmm(x.transpose(1, 2), y.expand(x.shape[0], *y.shape)))


def train_step(interactions: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, grad: torch.Tensor) -> None:
    """Forward and backward with a dense output gradient, as in training (``sum().backward()`` would
    send a stride-0 one, which some products copy and others do not)."""
    interactions(x).backward(grad)


def milliseconds(step: Callable[[], None], iterations: int = 20) -> float:
    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    return (time.perf_counter() - start) / iterations * 1e3


def best_interleaved(steps: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Milliseconds of each step, best of ``repeats`` rounds that each time every step once, in turn."""
    best = {name: float("inf") for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            best[name] = min(best[name], milliseconds(step))
    return best


def measured_on() -> str:
    """The start of a table's header line: date, CPU, threads and torch version."""
    return (
        f"Measured {datetime.date.today()} on {cpu_name()}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}"
    )


def kernel_benchmark_args(doc: str) -> argparse.Namespace:
    """``--repeats`` and ``--no-write`` of a kernel benchmark; then allocate as training does
    (``train.malloc``'s default) and seed torch."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timings of each (the best counts)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    configure_malloc("retain")
    torch.manual_seed(0)
    return args


def main() -> None:
    args = kernel_benchmark_args(__doc__)
    rows = []
    for label, batch, n, d, k in SHAPES:
        fmb = FactorizationMachineBlock(n, d, num_outputs=1, rank=k, hidden=[])
        x = torch.randn(batch, n, d, requires_grad=True)
        y = fmb.projection.weight
        for earlier in (folded, transposed_first):
            torch.testing.assert_close(fmb.interactions(x), earlier(x, y), rtol=1e-4, atol=1e-3)
        grad = torch.randn(batch, n, k)
        steps = {
            "folded": partial(train_step, partial(folded, y=y), x, grad),
            "transposed": partial(train_step, partial(transposed_first, y=y), x, grad),
            "now": partial(train_step, fmb.interactions, x, grad),
        }
        best = best_interleaved(steps, args.repeats)
        rows.append(
            [label, f"{batch}×{n}×{d}, k={k}"]
            + [f"{best[name]:.2f}" for name in steps]
            + [f"{best['folded'] / best['now']:.2f}x", f"{best['transposed'] / best['now']:.2f}x"]
        )
        print(rows[-1], flush=True)
    headers = [
        "shape",
        "X, Y rank",
        "first: ms (matmul, 2-D Y)",
        "second: ms (Xᵀ Y first)",
        "now: ms (Yᵀ X first)",
        "now vs first",
        "now vs second",
    ]
    table = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    header = (
        f"{measured_on()}, fp32: forward and backward of `X (Xᵀ Y)` (to X and Y), best of {args.repeats} "
        "interleaved timings, train.malloc=retain."
    )
    publish(BEGIN, END, header, table, write=not args.no_write)


if __name__ == "__main__":
    main()
