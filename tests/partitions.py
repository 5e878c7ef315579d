r"""Daily partitions of click logs in the Criteo format, written by the suite (retraining and warm-start tests).

Day ``d`` (1-based) is ``<folder>/day=<d>/clicks.tsv``. Two categorical columns carry the signal, a
user (``cat_0``) and an item (``cat_1``), and one count (``int_0``):

.. math::
    \text{logit} = w_{\text{user}} + v_{\text{item}} + 0.5\,(\log(1 + n) - 1.5) - 0.3,\qquad
    w, v \sim N(0, \sigma^2)\ \text{fixed per id (seeded by the id)}

Day ``d`` draws users from ``0..users·(1 + growth·(d-1))`` and items likewise, so each new day brings
ids never seen before while every earlier id keeps its weight: a model of day 1 is good on day 2
except for the new ids. The other categorical and count columns are blank (missing).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SIGMA = 1.5


def _weights(ids: np.ndarray, salt: int) -> np.ndarray:
    """A fixed N(0, SIGMA²) weight per id, the same on every day."""
    return np.array([np.random.default_rng([salt, int(i)]).normal(0.0, SIGMA) for i in ids])


def write_day(
    folder: Path, day: int, rows: int = 6_000, users: int = 150, items: int = 100, growth: float = 0.2
) -> Path:
    """Write day ``day``'s file under ``folder/day=<day>/``; returns that partition folder."""
    rng = np.random.default_rng([7, day])
    scale = 1 + growth * (day - 1)
    user = rng.integers(0, int(users * scale), rows)
    item = rng.integers(0, int(items * scale), rows)
    count = rng.poisson(3.0, rows)
    user_w, item_w = _weights(np.arange(int(users * scale)), 1), _weights(np.arange(int(items * scale)), 2)
    logit = user_w[user] + item_w[item] + 0.5 * (np.log1p(count) - 1.5) - 0.3
    label = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    blank_ints, blank_cats = "\t" * 12, "\t" * 24
    lines = [
        f"{y}\t{n}{blank_ints}\t{u:08x}\t{0x10000000 + i:08x}{blank_cats}"
        for y, n, u, i in zip(label, count, user, item)
    ]
    partition = folder / f"day={day}"
    partition.mkdir(parents=True, exist_ok=True)
    (partition / "clicks.tsv").write_text("\n".join(lines) + "\n")
    return partition
