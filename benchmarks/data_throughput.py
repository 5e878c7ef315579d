"""Rows/s from local shards to ready training batches (dense tensor, KeyedJaggedTensor, labels).

One process pinned to one core reads a Criteo-shaped synthetic dataset (13 dense, 26 sparse
features) with :class:`wukong.data.reader.DatasetReader`, with and without shuffling. The baseline,
measured in the same run on the same rows, is the naive WebDataset layout: one tar member group per
row (``dense.npy``, ``sparse.npy``, ``label.cls``) read with ``webdataset.WebDataset`` and batched in
Python. The table goes to docs/benchmarks.md between this benchmark's markers.

    python benchmarks/data_throughput.py [--rows 1000000] [--naive-rows 100000] [--batch-size 4096] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from benchmarks_doc import publish
from tabulate import tabulate
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from wukong.data.prepare import PrepareOptions, prepare
from wukong.data.reader import DatasetReader
from wukong.data.sources.synthetic import SyntheticSource

BEGIN, END = "<!-- data_throughput:begin -->", "<!-- data_throughput:end -->"


def rate(read) -> tuple[int, float]:
    start = time.perf_counter()
    rows = read()
    return rows, rows / (time.perf_counter() - start)


def ours(uri: str, batch_size: int, shuffle: bool) -> int:
    rows = 0
    for batch in DatasetReader(uri, "train", batch_size, shuffle=shuffle, drop_last=False):
        rows += len(batch)
    return rows


def write_naive(uri: str, folder: Path, rows: int) -> list[str]:
    """The same training rows as one-row-per-sample WebDataset shards."""
    pattern = str(folder / "naive-%06d.tar")
    written = 0
    with wds.ShardWriter(pattern, maxcount=100_000, verbose=0) as sink:
        for batch in DatasetReader(uri, "train", 8192, shuffle=False, drop_last=False):
            values = batch.sparse.values().view(len(batch.sparse.keys()), -1).T.numpy()
            for i in range(len(batch)):
                sink.write(
                    {
                        "__key__": f"{written:09d}",
                        "dense.npy": batch.dense[i].numpy(),
                        "sparse.npy": values[i].astype(np.int64),
                        "label.cls": int(batch.labels[i]),
                    }
                )
                written += 1
                if written == rows:
                    return sorted(str(p) for p in folder.glob("naive-*.tar"))
    return sorted(str(p) for p in folder.glob("naive-*.tar"))


def naive(paths: list[str], keys: list[str], batch_size: int) -> int:
    rows = 0
    dataset = wds.WebDataset(paths, shardshuffle=False).decode().to_tuple("dense.npy", "sparse.npy", "label.cls")
    dense, sparse, labels = [], [], []

    def flush() -> None:
        ids = torch.from_numpy(np.stack(sparse))
        KeyedJaggedTensor(keys=keys, values=ids.T.reshape(-1), lengths=torch.ones(ids.numel(), dtype=torch.int64))
        torch.from_numpy(np.stack(dense)), torch.tensor(labels, dtype=torch.float32)

    for d, s, y in dataset:
        dense.append(d)
        sparse.append(s)
        labels.append(y)
        if len(labels) == batch_size:
            flush()
            rows += len(labels)
            dense, sparse, labels = [], [], []
    if labels:
        flush()
        rows += len(labels)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the synthetic dataset")
    parser.add_argument("--naive-rows", type=int, default=100_000, help="rows read by the (slow) naive baseline")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        uri = str(Path(tmp) / "ds")
        manifest = prepare(SyntheticSource(rows=args.rows, seed=0), uri, PrepareOptions(split=(1.0, 0.0, 0.0)))
        keys = [f.name for f in manifest.schema.sparse]
        naive_paths = write_naive(uri, Path(tmp), args.naive_rows)
        ours(uri, args.batch_size, shuffle=False)  # warm the page cache for every reader alike
        results = [
            (
                "naive WebDataset, one row per sample (baseline)",
                *rate(lambda: naive(naive_paths, keys, args.batch_size)),
            ),
            ("DatasetReader, row blocks, no shuffle", *rate(lambda: ours(uri, args.batch_size, shuffle=False))),
            ("DatasetReader, row blocks, shuffled", *rate(lambda: ours(uri, args.batch_size, shuffle=True))),
        ]
    baseline = results[0][2]
    rows = [[name, f"{n:,}", f"{r:,.0f}", f"{r / baseline:.1f}x"] for name, n, r in results]
    table = tabulate(rows, headers=["reader", "rows", "rows/s", "vs naive"], tablefmt="github", disable_numparse=True)
    header = (
        f"Measured {datetime.date.today()}: one process on one core, batch {args.batch_size}, Criteo-shaped rows "
        f"(13 dense, 26 sparse) from local shards to dense tensor + KeyedJaggedTensor + labels, sha256 verified."
    )
    publish(BEGIN, END, header, table, write=not args.no_write)


if __name__ == "__main__":
    main()
