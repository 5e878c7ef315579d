"""One trial (train a config, evaluate it, describe it as a record) and the runner that runs many.

A trial is ``wukong train --config PRESET --model NAME --set ... --set train.seed=S`` on a prepared
dataset, then ``wukong evaluate`` on the requested splits. Its record (one JSON line) holds the
config, the cost and the quality:

- ``mflops_per_example``: analytic forward MFLOP per example; ``parameters``: dense / sparse / total;
- ``examples_seen = steps × batch_size`` (global batch) and
  ``training_flops = 3 × forward FLOP/example × examples_seen`` (the usual estimate: the backward
  pass costs about twice the forward pass; embedding look-ups and optimizer updates are not counted);
- ``steps``, ``best_step`` (the exported model is the best validation checkpoint), wall and training time;
- per evaluated split (``valid``, ``test``): AUC, LogLoss, NE, calibration, and every other scalar the
  evaluation reports (``oracle_logloss``, ``excess_logloss`` on data with known probabilities).

:class:`TrialRunner` runs trials as local worker processes (``python -m wukong.experiments.trials``),
``parallel`` at a time, and appends each finished trial's record to the experiment's :class:`Journal`.
Run again after a kill, it skips the finished trials and reruns the others from scratch (their partial
folders are discarded); trials that failed are tried again. The KFP components call :func:`run_trial`
directly, one trial per task.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wukong.data.errors import DataError
from wukong.experiments.journal import Journal

TRAINING_FLOPS_PER_FORWARD = 3  # forward + backward ≈ 3 × forward
RECORD = "trial.json"  # the record, also written into the trial's output folder
JOB = "job.json"  # what a local worker process runs
LOG = "log.txt"
TRIALS_DIR = "trials"
FAILED = "failed"


class TrialFailed(RuntimeError):
    """Training or evaluation of a trial did not finish."""


@dataclass(frozen=True)
class TrialSpec:
    """What to train: a preset plus ``--set`` overrides, a model, a seed, and the splits to evaluate.

    ``meta`` is copied into the record as is (a sweep point's target MFLOP, a tuning trial's parameters).
    """

    id: str
    model: str
    preset: str = "default"
    overrides: tuple[str, ...] = ()
    seed: int = 0
    splits: tuple[str, ...] = ("valid",)
    meta: dict[str, Any] = field(default_factory=dict)

    def train_args(self, data_uri: str, output_uri: str) -> list[str]:
        """The arguments of ``wukong train`` that run this trial."""
        sets = [*self.overrides, f"train.seed={self.seed}"]
        return [
            "--data",
            data_uri,
            "--output",
            output_uri,
            "--config",
            self.preset,
            "--model",
            self.model,
            *(item for override in sets for item in ("--set", override)),
        ]

    def identity(self) -> dict[str, Any]:
        """What must match for a recorded trial to count as this one when an experiment resumes."""
        return {
            "model": self.model,
            "preset": self.preset,
            "overrides": list(self.overrides),
            "seed": self.seed,
            "splits": list(self.splits),
        }

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, **self.identity(), "meta": self.meta}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialSpec:
        return cls(
            id=data["id"],
            model=data["model"],
            preset=data.get("preset", "default"),
            overrides=tuple(data.get("overrides", ())),
            seed=int(data.get("seed", 0)),
            splits=tuple(data.get("splits", ("valid",))),
            meta=dict(data.get("meta", {})),
        )


def _scalars(result: dict[str, Any]) -> dict[str, float]:
    """The scalar metrics of an evaluation (nested sections such as an ``oracle`` block flattened)."""
    flat: dict[str, float] = {}
    for key, value in result.items():
        if isinstance(value, bool) or key == "curves":
            continue
        if isinstance(value, (int, float)):
            flat[key] = value
        elif isinstance(value, dict):
            flat.update({f"{key}_{k}": v for k, v in value.items() if isinstance(v, (int, float))})
    return flat


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def make_record(
    spec: TrialSpec, card: dict[str, Any], evaluations: dict[str, dict[str, Any]], wall_seconds: float, output: str
) -> dict[str, Any]:
    """A finished trial's record from its model card and evaluations (see the module docstring)."""
    from wukong.config import config_from_dict
    from wukong.model.summary import summarize_models
    from wukong.schema import FeatureSchema

    config = config_from_dict(card["config"], f"{output}/model_card.json")
    size = summarize_models(FeatureSchema.from_dict(card["schema"]), config.model, [card["model"]])[0]
    examples = card["steps"] * config.train.batch_size
    mflops = card["mflops_per_example"]
    return {
        "id": spec.id,
        "status": "ok",
        **spec.identity(),
        **spec.meta,
        "command": "wukong train " + shlex.join(spec.train_args(card["dataset"]["uri"], output)),
        "mflops_per_example": mflops,
        "parameters": {"dense": size.dense_params, "sparse": size.sparse_params, "total": size.total_params},
        "batch_size": config.train.batch_size,
        "steps": card["steps"],
        "best_step": card.get("best_step"),
        "epochs_completed": card.get("epochs_completed"),
        "stopped_early": card.get("stopped_early"),
        "examples_seen": examples,
        "training_flops": TRAINING_FLOPS_PER_FORWARD * mflops * 1e6 * examples,
        **{split: _scalars(result) for split, result in evaluations.items()},
        "training_seconds": card.get("training_seconds"),
        "wall_seconds": wall_seconds,
        "finished_at": _now(),
        "output": output,
        "config": card["config"],
    }


def failure_record(spec: TrialSpec, error: str, wall_seconds: float, output: str) -> dict[str, Any]:
    return {
        "id": spec.id,
        "status": FAILED,
        **spec.identity(),
        **spec.meta,
        "error": error,
        "wall_seconds": wall_seconds,
        "finished_at": _now(),
        "output": output,
    }


def check_dataset(uri: str) -> None:
    """Fail with one line if ``uri`` is not a prepared dataset (before any worker would)."""
    from wukong.data.manifest import read_manifest
    from wukong.io import open_storage

    read_manifest(open_storage(uri))


def pin_settings(path: Path, settings: dict[str, Any], may_change: Sequence[str] = ()) -> None:
    """Record an experiment's settings at ``path``, or check that a resumed run repeats them.

    Raises:
        DataError: a setting other than those in ``may_change`` differs from the recorded one.
    """
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings, indent=1, default=str) + "\n")
        return
    before = json.loads(path.read_text())
    changed = [k for k in settings if k not in may_change and before.get(k) != json.loads(json.dumps(settings[k]))]
    if changed:
        was = ", ".join(f"{k}={before.get(k)!r}" for k in changed)
        allowed = f" (only {', '.join(may_change)} may change)" if may_change else ""
        raise DataError(
            f"{path.parent} holds an experiment with other {', '.join(changed)} (was {was}); "
            f"repeat its command{allowed} or give another --output"
        )


class _Tee(io.TextIOBase):
    """Writes to every one of ``streams`` (stderr stays where it was, and a copy is kept)."""

    def __init__(self, *streams: Any) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


def _train_in_this_process(spec: TrialSpec, data_uri: str, output_uri: str) -> None:
    from wukong.cli import main

    copy = io.StringIO()
    with contextlib.redirect_stderr(_Tee(sys.stderr, copy)):
        code = main(["train", *spec.train_args(data_uri, output_uri)])
    if code:
        raise TrialFailed(f"wukong train exited with status {code}: {last_line(copy.getvalue()) or '(no message)'}")


def run_trial(
    spec: TrialSpec,
    data_uri: str,
    output_uri: str,
    *,
    launcher: str = "local",
    nproc: int = 1,
    nodes: int = 1,
    gpus_per_node: int = 0,
) -> dict[str, Any]:
    """Train and evaluate ``spec`` into ``output_uri``; returns its record (also written there as trial.json).

    One local process trains in this process; ``nproc > 1`` runs local torchrun workers, and the
    ``pytorchjob`` launcher a multi-node job on the cluster (as the training pipeline's train step)."""
    from wukong.io import open_storage
    from wukong.pipeline import steps

    started = time.time()
    if launcher == "local" and nproc == 1 and nodes == 1:
        _train_in_this_process(spec, data_uri, output_uri)
    else:
        overrides = [*spec.overrides, f"train.seed={spec.seed}"]
        steps.train(data_uri, output_uri, spec.model, spec.preset, overrides, launcher, nproc, nodes, gpus_per_node)
    storage = open_storage(output_uri)
    card = json.loads(storage.read_bytes("model_card.json"))
    evaluations = {split: steps.evaluate(output_uri, data_uri, split) for split in spec.splits}
    return _written(storage, make_record(spec, card, evaluations, time.time() - started, output_uri))


def _written(storage: Any, record: dict[str, Any]) -> dict[str, Any]:
    """``record``, after writing it as the trial folder's trial.json."""
    storage.write_bytes(RECORD, (json.dumps(record, indent=1, default=str) + "\n").encode())
    return record


def run_trial_keeping_failures(spec: TrialSpec, data_uri: str, output_uri: str, **launch: Any) -> dict[str, Any]:
    """:func:`run_trial`, returning a failure as the trial's failed record (also written as its trial.json)
    instead of raising it, as the local runner records a failed worker: a search keeps its other trials,
    and its sampler learns the failure. Only errors raised in this process are kept: a step killed from
    outside (out of memory) fails as any step does."""
    from wukong.io import open_storage

    started = time.time()
    try:
        return run_trial(spec, data_uri, output_uri, **launch)
    except Exception as error:  # diverged training, a setting the model refuses, a failed job...
        record = failure_record(spec, f"{type(error).__name__}: {error}", time.time() - started, output_uri)
    return _written(open_storage(output_uri), record)


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def describe(record: dict[str, Any]) -> str:
    """One line about a finished trial."""
    if record["status"] != "ok":
        return f"{record['id']} failed: {last_line(record.get('error', ''))}"
    split = "valid" if "valid" in record else next((s for s in ("test", "train") if s in record), None)
    quality = ""
    if split:
        metrics = record[split]
        quality = f"{split} auc {metrics['auc']:.4f} logloss {metrics['logloss']:.4f}"
        if "excess_logloss" in metrics:
            quality += f" excess {metrics['excess_logloss']:.4f}"
    return (
        f"{record['id']}: {quality} ({record['mflops_per_example']:.3g} MFLOP/example, "
        f"{record['steps']} steps, {record['wall_seconds']:.0f} s)"
    )


def _die_with_parent() -> None:
    """In a worker: get SIGKILL when the runner dies, so a killed experiment leaves no orphan training."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class TrialRunner:
    """Runs trials as local worker processes, ``parallel`` at a time, each with its own folder under
    ``root/trials/<id>``, and appends their records to ``root/<journal>``.

    ``threads``: CPU threads per worker (default: the cores divided among the parallel workers).
    ``keep_checkpoints``: keep each finished trial's ``checkpoints/`` (default: only the exported model).
    """

    data_uri: str
    root: Path
    journal_name: str = "trials.jsonl"
    parallel: int = 1
    nproc: int = 1
    threads: int | None = None
    keep_checkpoints: bool = False
    log: Callable[[str], None] = print

    def __post_init__(self) -> None:
        if self.parallel < 1 or self.nproc < 1:
            raise DataError(f"--parallel and --nproc must be >= 1, got {self.parallel} and {self.nproc}")
        self.journal = Journal(self.root / self.journal_name)

    def run(self, specs: Sequence[TrialSpec]) -> dict[str, dict[str, Any]]:
        """Run the trials that have not finished well (never started, interrupted, or failed before);
        returns the records of all ``specs`` by id."""
        ids = [s.id for s in specs]
        if len(set(ids)) != len(ids):
            raise DataError(f"trial ids must be unique, got {ids}")
        with self._exclusive():
            done = self.journal.records()
            self._check_resumable(specs, done)
            todo = [s for s in specs if done.get(s.id, {}).get("status") != "ok"]
            if len(todo) < len(specs):
                self.log(f"{len(specs) - len(todo)} of {len(specs)} trials already finished ({self.journal.path})")
            if any(s.id in done for s in todo):
                self.log(f"retrying {sum(s.id in done for s in todo)} failed trials")
            self._run_all(todo, len(specs) - len(todo), len(specs))
            done = self.journal.records()
        return {s.id: done[s.id] for s in specs if s.id in done}

    def _check_resumable(self, specs: Sequence[TrialSpec], done: dict[str, dict[str, Any]]) -> None:
        for spec in specs:
            recorded = done.get(spec.id)
            if recorded is None:
                continue
            before = {key: recorded.get(key) for key in spec.identity()}
            if before != spec.identity():
                raise DataError(
                    f"{self.journal.path}: trial {spec.id} was run as {before}, this run asks for {spec.identity()}; "
                    "repeat the original command to resume it, or give another --output"
                )

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DataError(f"{self.root}: another experiment is running in this folder") from None
            yield

    def _worker_env(self) -> dict[str, str]:
        threads = self.threads or max(1, (os.cpu_count() or 1) // (self.parallel * self.nproc))
        return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}

    def _start(self, spec: TrialSpec) -> subprocess.Popen:
        folder = self.root / TRIALS_DIR / spec.id
        if folder.exists():  # a trial that did not finish: start it again from nothing
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        job = {"spec": spec.to_dict(), "data": self.data_uri, "output": str(folder), "nproc": self.nproc}
        (folder / JOB).write_text(json.dumps(job, indent=1))
        with open(folder / LOG, "wb") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "wukong.experiments.trials", str(folder / JOB)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._worker_env(),
                preexec_fn=_die_with_parent,
            )

    def _finish(self, spec: TrialSpec, process: subprocess.Popen, started: float) -> dict[str, Any]:
        folder = self.root / TRIALS_DIR / spec.id
        if process.returncode == 0 and (folder / RECORD).is_file():
            record = json.loads((folder / RECORD).read_text())
            if not self.keep_checkpoints:
                shutil.rmtree(folder / "checkpoints", ignore_errors=True)
            return record
        tail = "\n".join((folder / LOG).read_text(errors="replace").splitlines()[-15:])
        return failure_record(
            spec, f"worker exited with status {process.returncode}:\n{tail}", time.time() - started, str(folder)
        )

    def _run_all(self, todo: list[TrialSpec], finished: int, total: int) -> None:
        pending: deque[TrialSpec] = deque(todo)
        running: dict[subprocess.Popen, tuple[TrialSpec, float]] = {}
        try:
            while pending or running:
                while pending and len(running) < self.parallel:
                    spec = pending.popleft()
                    running[self._start(spec)] = (spec, time.time())
                for process in [p for p in running if p.poll() is not None]:
                    spec, started = running.pop(process)
                    record = self._finish(spec, process, started)
                    self.journal.append(record)
                    finished += 1
                    self.log(f"[{finished}/{total}] {describe(record)}")
                time.sleep(0.2)
        finally:
            for process in running:
                process.terminate()
            for process in running:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()


def main(argv: Sequence[str] | None = None) -> int:
    """A local worker: run the trial described by a job file (written by :class:`TrialRunner`)."""
    args = list(sys.argv[1:] if argv is None else argv)
    job = json.loads(Path(args[0]).read_text())
    spec = TrialSpec.from_dict(job["spec"])
    record = run_trial(spec, job["data"], job["output"], nproc=job.get("nproc", 1))
    print(describe(record), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
