"""Data throughput: reading shards into training batches, and ingesting raw Criteo TSV into shards.

**Reader.** Rows/s from local shards to ready training batches (dense tensor, KeyedJaggedTensor,
labels). One process pinned to one core reads a Criteo-shaped synthetic dataset (13 dense, 26 sparse
features) with :class:`wukong.data.reader.DatasetReader`, with and without shuffling. The baseline,
measured in the same run on the same rows, is the naive WebDataset layout: one tar member group per
row (``dense.npy``, ``sparse.npy``, ``label.cls``) read with ``webdataset.WebDataset`` and batched in
Python.

**Ingest.** MB/s of ``wukong data prepare --source criteo`` on a generated Criteo-format TSV, per
core (input bytes per CPU-second of the process and its workers) and per wall second, for 1 and 2
workers, with in the same run: the speed of Arrow's CSV parser alone on the same bytes (the ceiling
of any ingest that parses them) and, given ``--baseline TREE`` (a source tree of an earlier version
that has ``--workers``, e.g. ``git archive cf6563a wukong | tar -x -C /tmp/old``), that version's
``prepare`` with 1 and 2 workers. Each configuration runs in its own process, best of ``--repeats``.

Each table goes to docs/benchmarks.md between its benchmark's markers.

    python benchmarks/data_throughput.py [--only reader|ingest] [--rows 1000000] [--naive-rows 100000]
        [--batch-size 4096] [--ingest-rows 500000] [--repeats 2] [--baseline TREE] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from benchmarks_doc import cpu_name, publish
from tabulate import tabulate
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from wukong.data.prepare import PrepareOptions, prepare
from wukong.data.reader import DatasetReader
from wukong.data.sources.synthetic import SyntheticSource

BEGIN, END = "<!-- data_throughput:begin -->", "<!-- data_throughput:end -->"
INGEST_BEGIN, INGEST_END = "<!-- ingest_throughput:begin -->", "<!-- ingest_throughput:end -->"
PART_BYTES = 16 << 20  # parts of the input for every ingest configuration (so 2 workers get equal shares)


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


def reader_benchmark(args: argparse.Namespace) -> None:
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


def criteo_tsv(path: Path, rows: int, seed: int = 0) -> int:
    """Write ``rows`` Criteo-format lines (Zipf-distributed 8-hex-digit categories, log-normal counts, 20%
    blank integers, 10% blank categories); returns the file's size."""
    import pyarrow as pa
    import pyarrow.compute as pc

    rng = np.random.default_rng(seed)
    columns = [pa.array(rng.integers(0, 2, rows).astype(str))]
    for j in range(13):
        counts = np.floor(rng.lognormal(1.5 + 0.2 * (j % 3), 1.5, rows)).astype(np.int64) - (rng.random(rows) < 0.02)
        columns.append(pc.if_else(pa.array(rng.random(rows) < 0.2), "", pc.cast(pa.array(counts), pa.string())))
    for _ in range(26):
        cardinality = int(10 ** rng.uniform(1, 6))
        values = pa.array([f"{v:08x}" for v in rng.integers(0, 2**32, cardinality)])
        picked = values.take(pa.array(np.minimum(rng.zipf(1.2, rows) - 1, cardinality - 1)))
        columns.append(pc.if_else(pa.array(rng.random(rows) < 0.1), "", picked))
    lines = pc.binary_join_element_wise(*columns, "\t")
    with open(path, "wb") as f:
        for start in range(0, rows, 100_000):
            f.write(("\n".join(lines.slice(start, 100_000).to_pylist()) + "\n").encode())
    return path.stat().st_size


# Run in a fresh process per configuration: times one call, CPU of the process and its workers (forked
# by a forkserver: stopping the server after the call adds their CPU to this process's children's).
_TIMED = r"""
import json, multiprocessing.forkserver, resource, sys, time
from pathlib import Path

def stop_forkserver():
    server = multiprocessing.forkserver._forkserver
    if getattr(server, "_forkserver_pid", None):
        server._stop()

def cpu():
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

def run(kind, path, out, workers, part_bytes):
    if kind == "parse":
        from wukong.data.sources.criteo import NAMES, TYPED
        from wukong.data.sources.text import parse_lines, read_lines
        return lambda: [parse_lines(b, NAMES, "\t", TYPED, []) for b in read_lines(Path(path))]
    from wukong.data.prepare import PrepareOptions, prepare
    from wukong.data.sources.criteo import CriteoSource
    try:  # as `wukong data prepare` does (its default --malloc retain); older trees: glibc's defaults
        from wukong.malloc import configure_malloc
        configure_malloc("retain")
    except ImportError:
        pass
    source = CriteoSource(Path(path), part_bytes=part_bytes)
    return lambda: prepare(source, out, PrepareOptions(), workers=workers)

if __name__ == "__main__":
    kind, path, out, workers, part_bytes = sys.argv[1:3] + [sys.argv[3], int(sys.argv[4]), int(sys.argv[5])]
    call = run(kind, path, out, workers, part_bytes)
    wall, used = time.perf_counter(), cpu()
    call()
    stop_forkserver()
    print(json.dumps({"wall": time.perf_counter() - wall, "cpu": cpu() - used}))
"""


def timed(kind: str, path: Path, folder: Path, workers: int, tree: str | None, repeat: int) -> dict:
    """Wall and CPU seconds of one run of one configuration, in a fresh process."""
    script = folder / "timed.py"
    script.write_text(_TIMED)
    env = {**os.environ, **({"PYTHONPATH": tree} if tree else {})}
    out = folder / f"{kind}-{workers}-{'tree' if tree else 'this'}-{repeat}"
    command = [sys.executable, str(script), kind, str(path), str(out), str(workers), str(PART_BYTES)]
    # in the temporary folder: a worker server started with `-c` puts its working directory first on
    # sys.path, and a checkout there would shadow --baseline's tree
    run = subprocess.run(command, env=env, cwd=folder, check=True, capture_output=True, text=True)
    shutil.rmtree(out, ignore_errors=True)
    return json.loads(run.stdout)


def best_of_rounds(configurations: list[tuple], path: Path, folder: Path, repeats: int) -> list[dict]:
    """Each configuration's best wall and CPU seconds over ``repeats`` rounds, every round running every
    configuration once in turn: a slow minute of this shared machine then costs every configuration
    alike, instead of all the runs of whichever configuration it fell on."""
    best: list[dict] = [{} for _ in configurations]
    for repeat in range(repeats):
        for index, (_, kind, workers, tree) in enumerate(configurations):
            result = timed(kind, path, folder, workers, tree, repeat)
            best[index] = {k: min(v, best[index].get(k, v)) for k, v in result.items()}
    return best


def _spin(count: int) -> int:
    total = 0
    for i in range(count):
        total += i
    return total


def free_cores_ratio(count: int = 5_000_000) -> tuple[float, float]:
    """Wall seconds of a CPU-bound loop run twice in one process, over twice in two processes at once:
    how much faster 2 workers *could* be on this machine right now (2.0 when two cores are free)."""
    import multiprocessing

    start = time.perf_counter()
    _spin(count), _spin(count)
    one = time.perf_counter() - start
    with multiprocessing.get_context("forkserver").Pool(2) as pool:
        pool.map(_spin, [1, 1])  # started
        start = time.perf_counter()
        pool.map(_spin, [count, count])
        two = time.perf_counter() - start
    return one, two


def ingest_benchmark(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "day.tsv"
        size = criteo_tsv(path, args.ingest_rows)
        configurations = [("Arrow CSV parse alone, typed, 1 thread (ceiling)", "parse", 1, None)]
        if args.baseline:  # the same prepare (with --workers) from an earlier source tree
            configurations += [
                (f"baseline tree, {w} worker{'s' * (w > 1)}", "prepare", w, args.baseline) for w in (1, 2)
            ]
        configurations += [("prepare, 1 worker", "prepare", 1, None), ("prepare, 2 workers", "prepare", 2, None)]
        results = best_of_rounds(configurations, path, folder, args.repeats)
        loop_one, loop_two = free_cores_ratio()
    # each prepare's wall time against one worker of the same source tree
    one_worker = {tree: r for (_, kind, w, tree), r in zip(configurations, results) if kind == "prepare" and w == 1}
    rows = [
        [
            name,
            f"{r['wall']:.2f}",
            f"{size / r['wall'] / 1e6:.1f}",
            f"{r['cpu']:.2f}",
            f"{size / r['cpu'] / 1e6:.1f}",
            f"{one_worker[tree]['wall'] / r['wall']:.2f}x" if kind == "prepare" else "",
        ]
        for (name, kind, _, tree), r in zip(configurations, results)
    ]
    rows.append(["CPU-bound loop, 2 processes vs 1 (free cores now)", "", "", "", "", f"{loop_one / loop_two:.2f}x"])
    headers = ["configuration", "wall s", "MB/s", "CPU s", "MB/s per core", "vs 1 worker (wall)"]
    table = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    header = (
        f"Measured {datetime.date.today()} on {cpu_name()} ({os.cpu_count()} cores), load average "
        f"{os.getloadavg()[0]:.1f} at the end: a generated Criteo TSV of {args.ingest_rows:,} rows "
        f"({size / 1e6:.0f} MB, {PART_BYTES >> 20} MiB parts), frequency vocabularies, best of {args.repeats} "
        "rounds (each round runs every configuration once). "
        "Per core: input bytes per CPU-second of the process and its workers."
        + (f" Baseline: the `prepare` of the source tree {args.baseline}." if args.baseline else "")
    )
    publish(INGEST_BEGIN, INGEST_END, header, table, write=not args.no_write)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("reader", "ingest"), help="run one of the two benchmarks")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the synthetic dataset")
    parser.add_argument("--naive-rows", type=int, default=100_000, help="rows read by the (slow) naive baseline")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--ingest-rows", type=int, default=500_000, help="rows of the generated Criteo TSV")
    parser.add_argument("--repeats", type=int, default=2, help="ingest: runs per configuration (the best counts)")
    parser.add_argument("--baseline", metavar="TREE", help="ingest: a source tree of an earlier version to compare")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.only != "reader":
        ingest_benchmark(args)  # first: the reader pins this process to one core
    if args.only != "ingest":
        reader_benchmark(args)


if __name__ == "__main__":
    main()
