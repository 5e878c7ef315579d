"""The FMB's two products ``X (Xᵀ Y)``, as the model computes them against the previous formulation.

``FactorizationMachineBlock.interactions`` multiplies with two batched products and a static Y
broadcast as a stride-0 view (``bmm(X, bmm(Xᵀ, Y_b))``). Before, it called ``matmul(Xᵀ, Y)`` with a
2-D Y, which folds the batch into the rows of a 2-D product and so first copies ``Xᵀ`` into a
contiguous ``(B·d, n)`` block. Both are timed forward and backward on the shapes of the model
benchmark's Wukong points (d = 128, n = 27) and of the public reference's config (d = 16, n = 11 and
its 80-row layers), interleaved, best of ``--repeats``; the table goes to docs/benchmarks.md.

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

from wukong.model.blocks import FactorizationMachineBlock

BEGIN, END = "<!-- fm_products:begin -->", "<!-- fm_products:end -->"
# (label, B, n, d, k)
SHAPES = [
    ("Wukong 1 MFLOP/example, batch 512", 512, 27, 128, 5),
    ("Wukong 10 MFLOP/example, batch 512", 512, 27, 128, 18),
    ("reference config, layer 1, batch 4096", 4096, 11, 16, 8),
    ("reference config, layers 2-3, batch 4096", 4096, 80, 16, 8),
]


def previous(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The earlier formulation (the baseline)."""
    return torch.matmul(x, torch.matmul(x.transpose(1, 2), y))


def train_step(interactions: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> None:
    interactions(x).sum().backward()


def milliseconds(step: Callable[[], None], iterations: int = 20) -> float:
    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    return (time.perf_counter() - start) / iterations * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timings of each (the best counts)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    for label, batch, n, d, k in SHAPES:
        fmb = FactorizationMachineBlock(n, d, num_outputs=1, rank=k, hidden=[])
        x = torch.randn(batch, n, d, requires_grad=True)
        torch.testing.assert_close(fmb.interactions(x), previous(x, fmb.projection.weight), rtol=1e-4, atol=1e-3)
        steps = {
            "before": partial(train_step, partial(previous, y=fmb.projection.weight), x),
            "now": partial(train_step, fmb.interactions, x),
        }
        best = {name: float("inf") for name in steps}
        for _ in range(args.repeats):
            for name, step in steps.items():
                best[name] = min(best[name], milliseconds(step))
        rows.append(
            [
                label,
                f"{batch}×{n}×{d}, k={k}",
                f"{best['before']:.2f}",
                f"{best['now']:.2f}",
                f"{best['before'] / best['now']:.2f}x",
            ]
        )
        print(rows[-1], flush=True)
    headers = ["shape", "X, Y rank", "before: ms (matmul, 2-D Y)", "now: ms (bmm, broadcast Y)", "speed-up"]
    table = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    header = (
        f"Measured {datetime.date.today()} on {cpu_name()}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}, fp32: forward and backward of `X (Xᵀ Y)` (to X and Y), best of {args.repeats} "
        "interleaved timings."
    )
    publish(BEGIN, END, header, table, write=not args.no_write)


if __name__ == "__main__":
    main()
