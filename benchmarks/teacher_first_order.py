"""How much of a synthetic teacher's signal is first-order: the best any additive model can do on it.

The teacher's fields are drawn independently, so the first-order (ANOVA) part of its logit is

.. math::
    \\ell_1(x) = \\bar\\ell + \\sum_f g_f(x_f), \\qquad g_f(i) = \\mathbb{E}[\\ell \\mid x_f = i] - \\bar\\ell

(dense counts in quantile bins). This script estimates every ``g_f`` from ``--estimate-rows`` rows of
the generator's own logits (not labels: the exact conditional means, up to sampling), then scores
fresh rows with labels drawn from ``p(x)``: the oracle ``ℓ`` against ``ℓ₁``, by AUC and by LogLoss after
a one-dimensional logistic calibration fitted on half of them. A model whose AUC stays at or below
``ℓ₁``'s has learnt no more than per-id main effects; the interactions are the rest of the logit's
variance.

    python benchmarks/teacher_first_order.py                      # the default teacher, seed 0
    python benchmarks/teacher_first_order.py --set order=2 --set temperature=0.25
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import torch

from wukong.data.errors import DataError
from wukong.data.sources.teacher import Teacher, TeacherConfig
from wukong.evaluate import compute_metrics

DENSE_BINS = 20


def first_order(teacher: Teacher, rows: int, rng: np.random.Generator, chunk: int = 500_000):
    """``ℓ₁`` as a function of raw rows, estimated from ``rows`` of the teacher's logits."""
    c = teacher.config
    cards = c.cardinalities()
    sums, counts = [np.zeros(n) for n in cards], [np.zeros(n) for n in cards]
    dense_sums, dense_counts = np.zeros((c.num_dense, DENSE_BINS)), np.zeros((c.num_dense, DENSE_BINS))
    edges, total, seen = None, 0.0, 0
    for start in range(0, rows, chunk):
        dense, ids = teacher.draw(rng, min(chunk, rows - start))
        logit = teacher.logit(dense, ids)
        if edges is None:  # quantile bins of log(1 + count), from the first chunk
            quantiles = np.linspace(0, 1, DENSE_BINS + 1)[1:-1]
            edges = [np.unique(np.quantile(np.log1p(dense[:, j]), quantiles)) for j in range(c.num_dense)]
        for f, n in enumerate(cards):
            sums[f] += np.bincount(ids[:, f], logit, n)
            counts[f] += np.bincount(ids[:, f], minlength=n)
        for j in range(c.num_dense):
            bins = np.searchsorted(edges[j], np.log1p(dense[:, j]))
            dense_sums[j] += np.bincount(bins, logit, DENSE_BINS)
            dense_counts[j] += np.bincount(bins, minlength=DENSE_BINS)
        total, seen = total + logit.sum(), seen + len(logit)
    mean = total / seen
    effects = [np.where(n > 0, s / np.maximum(n, 1) - mean, 0.0) for s, n in zip(sums, counts)]
    dense_effects = np.where(dense_counts > 0, dense_sums / np.maximum(dense_counts, 1) - mean, 0.0)

    def predict(dense: np.ndarray, ids: np.ndarray) -> np.ndarray:
        out = mean + sum(effect[ids[:, f]] for f, effect in enumerate(effects))
        for j in range(c.num_dense):
            out = out + dense_effects[j][np.searchsorted(edges[j], np.log1p(dense[:, j]))]
        return out

    return predict


def calibrate(score: np.ndarray, labels: np.ndarray, steps: int = 30) -> tuple[float, float]:
    """``(a, b)`` of the logistic regression ``σ(a·score + b)`` (Newton's method)."""
    a, b = 1.0, 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(a * score + b)))
        w, r = p * (1 - p), p - labels
        gradient = np.array([(r * score).sum(), r.sum()])
        hessian = np.array([[(w * score * score).sum(), (w * score).sum()], [(w * score).sum(), w.sum()]])
        a, b = np.array([a, b]) - np.linalg.solve(hessian, gradient)
    return float(a), float(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="the teacher's seed (wukong data prepare --seed)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a TeacherConfig field")
    parser.add_argument("--estimate-rows", type=int, default=4_000_000)
    parser.add_argument("--test-rows", type=int, default=400_000)
    args = parser.parse_args()
    fields = {f.name: f.type for f in dataclasses.fields(TeacherConfig)}
    changes = {}
    for item in args.set:
        name, _, value = item.partition("=")
        if name not in fields:
            parser.error(f"--set {item}: no teacher field {name!r}; one of: {', '.join(fields)}")
        try:
            changes[name] = float(value) if fields[name] == "float" else int(value)
        except ValueError:
            parser.error(f"--set {item}: {name} takes a{' number' if fields[name] == 'float' else 'n integer'}")
    try:
        config = TeacherConfig(**changes)
    except DataError as error:
        parser.error(str(error))
    teacher = Teacher(config, args.seed)
    predict = first_order(teacher, args.estimate_rows, np.random.default_rng([args.seed, 1]))
    dense, ids = teacher.draw(np.random.default_rng([args.seed, 2]), args.test_rows)
    oracle = teacher.logit(dense, ids)
    labels = (np.random.default_rng([args.seed, 3]).random(len(oracle)) < 1 / (1 + np.exp(-oracle))).astype(float)
    half = len(labels) // 2
    print(f"teacher {teacher.config} (seed {args.seed}); first-order part from {args.estimate_rows:,} rows")
    print(f"{'score':<24} {'AUC':>7} {'LogLoss':>8} {'logit variance':>15}")
    for name, score in (("oracle", oracle), ("first-order part", predict(dense, ids))):
        a, b = calibrate(score[:half], labels[:half])
        probability = torch.from_numpy(1 / (1 + np.exp(-(a * score[half:] + b))))
        metrics = compute_metrics(probability, torch.from_numpy(labels[half:]))
        share = np.var(score - score.mean()) / np.var(oracle)
        print(f"{name:<24} {metrics['auc']:>7.4f} {metrics['logloss']:>8.4f} {share:>14.1%}")


if __name__ == "__main__":
    main()
