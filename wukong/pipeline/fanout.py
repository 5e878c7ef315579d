"""Ingest fanned out over pipeline tasks (pods), with the stages of ``wukong data prepare --workers``.

    plan ─▶ ParallelFor(group) scan ─▶ offsets ─▶ ParallelFor(group) count ─▶ vocabulary
         ─▶ ParallelFor(group) encode ─▶ commit

The source's parts (:meth:`Source.parts`: files, 64 MiB ranges of plain files) are split by bytes into
at most ``tasks`` groups of consecutive parts; the three loops run one task per group, and the
single steps between them gather the groups' results:

- **plan** resolves the partition (:class:`~wukong.pipeline.ingest.Ingest`: the same request as the
  single ingest step's), checks the output, removes objects of unfinished runs, fixes the run id and
  the groups;
- **scan** (:func:`wukong.data.stages.scan`) reads and validates a group's parts once and uploads
  their spooled rows;
- **offsets** checks the rejects over all parts (too many: the run fails, nothing published) and
  fixes the unfitted encoder;
- **count** (:func:`wukong.data.stages.count`) fits the encoder on each of a group's parts;
- **vocabulary** merges every part's fit in part order: frequency vocabularies from the parts'
  counts (hashing has nothing to merge), dense statistics, label means;
- **encode** (:func:`wukong.data.stages.encode`) writes a group's shards, named by the group;
- **commit** (:func:`wukong.data.prepare.commit`) writes the manifest last, then removes the staging.

The tasks share nothing but the dataset's storage: what a stage hands on lies under
``staging/<run>/`` (spooled rows, JSON summaries, pickled encoders, written by this same image within
one run). Nothing is visible before commit: shards carry the run id in their names and no manifest
references them, so a failed task publishes nothing, and the next run's plan removes what it left.
The rows, their ids and splits are those of ``wukong data prepare`` on the same input, whatever
``tasks`` is. Splits are by ratio: the plan refuses a time split
(:func:`~wukong.pipeline.ingest.check_fanned_out` says why).

Each task returns its spec with what it did under ``done`` (parts, rows, shards): the line a local
run shows for the task (:func:`wukong.pipeline.local.describe_step`).
"""

from __future__ import annotations

import json
import pickle
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from wukong.data.errors import DataError
from wukong.data.prepare import checked_rejects, commit, merged, new_encoder, new_run_id, offsets, open_output
from wukong.data.sources.base import Part
from wukong.data.stages import Scanned, Written, count, encode, groups, scan, writer_tag
from wukong.io import Storage, open_storage
from wukong.malloc import configure_malloc
from wukong.pipeline.ingest import Ingest, check_fanned_out

STAGING = "staging"


@dataclass
class Plan:
    """What every task of one fanned-out ingest reads first (``staging/<run>/plan.json``)."""

    run_id: str
    ingest: Ingest
    parts: list[dict[str, Any]]
    groups: list[list[int]]  # part indices of each group

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        return cls(**{**data, "ingest": Ingest(**data["ingest"])})


@dataclass
class _Task:
    """One task's view: the dataset's storage, the run's plan, and (for a loop task) its group."""

    storage: Storage
    plan: Plan
    group: int

    @classmethod
    def of(cls, spec: str) -> _Task:
        """The task of ``spec``. Every task is a process of its own (a pod, or a ``kfp.local``
        subprocess) and starts here, so this is also where it keeps freed memory for reuse
        (:mod:`wukong.malloc`), as ``wukong data prepare`` does."""
        configure_malloc("retain")
        item = json.loads(spec)
        storage = open_storage(item["dataset_uri"])
        plan = Plan.from_dict(_read_json(storage, _key(item["run_id"], "plan.json")))
        return cls(storage, plan, item["group"])

    def key(self, name: str) -> str:
        return _key(self.plan.run_id, name)

    def scans(self) -> list[Scanned]:
        """Every part's scan, in part order."""
        found = [_read_json(self.storage, self.key(f"scan-{g:04d}.json")) for g in range(len(self.plan.groups))]
        return [Scanned.from_dict(item) for group in found for item in group]

    def local(self, scanned: Scanned, folder: Path) -> Scanned:
        """``scanned`` with its spooled rows downloaded into ``folder``."""
        segments = []
        for key in scanned.segments:
            path = folder / Path(key).name
            path.write_bytes(self.storage.read_bytes(key))
            segments.append(str(path))
        return Scanned(scanned.part, scanned.rows, scanned.rejects, segments)


def _key(run_id: str, name: str) -> str:
    return f"{STAGING}/{run_id}/{name}"


def _read_json(storage: Storage, key: str) -> Any:
    return json.loads(storage.read_bytes(key))


def _read_pickle(task: _Task, name: str) -> Any:
    return pickle.loads(task.storage.read_bytes(task.key(name)))


def _write_json(storage: Storage, key: str, value: Any) -> None:
    storage.write_bytes(key, json.dumps(value).encode())


def _done(spec: str, **facts: Any) -> str:
    """``spec`` with what its task did (replacing what an earlier stage's task did)."""
    return json.dumps({**json.loads(spec), "done": facts})


def plan(
    source: str, input_uri: str, dataset_uri: str, tasks: int = 4, partition: str = "", **settings: Any
) -> list[str]:
    """Start a fanned-out ingest into ``dataset_uri`` (replacing the dataset there); returns one task spec
    (JSON) per group of parts, the items of the pipeline's loops. ``tasks``: at most this many groups of
    parts, one task each in every loop; the other arguments are those of the single ingest step
    (:func:`wukong.pipeline.steps.ingest`)."""
    if tasks < 1:
        raise DataError(f"ingest tasks must be >= 1, got {tasks}")
    ingest = Ingest.of(source, input_uri, dataset_uri, partition, **settings)
    check_fanned_out(ingest.split_by)
    storage = open_storage(ingest.dataset_uri)
    open_output(storage, ingest.options())
    parts = ingest.open().parts()
    run_id = new_run_id()
    split = [list(run) for run in groups([p.bytes for p in parts], tasks)]
    _write_json(storage, _key(run_id, "plan.json"), asdict(Plan(run_id, ingest, [asdict(p) for p in parts], split)))
    return [
        json.dumps(
            {
                "dataset_uri": ingest.dataset_uri,
                "run_id": run_id,
                "group": g,
                "groups": len(split),
                "parts": len(members),
                "bytes": sum(parts[i].bytes for i in members),
            }
        )
        for g, members in enumerate(split)
    ]


def scan_group(spec: str) -> str:
    """Scan a group's parts and upload their spooled rows; returns ``spec``."""
    task = _Task.of(spec)
    source = task.plan.ingest.open()
    found = []
    with tempfile.TemporaryDirectory(prefix="wukong-spool-") as folder:
        for index in task.plan.groups[task.group]:
            scanned = scan(source, Path(folder), Part(**task.plan.parts[index]))
            keys = []
            for segment in scanned.segments:
                keys.append(task.key(f"spool/{Path(segment).name}"))
                task.storage.upload_file(Path(segment), keys[-1])
            found.append(Scanned(scanned.part, scanned.rows, scanned.rejects, keys))
    _write_json(task.storage, task.key(f"scan-{task.group:04d}.json"), [s.to_dict() for s in found])
    rejected = sum(s.rejects.total for s in found)
    return _done(spec, parts=len(found), rows=sum(s.rows for s in found), rejected=rejected)


def check_offsets(specs: list[str]) -> list[str]:
    """After every scan: fail on too many rejects; fix the unfitted encoder. Returns ``specs``."""
    task = _Task.of(specs[0])
    options = task.plan.ingest.options()
    source, scans = task.plan.ingest.open(), task.scans()
    checked_rejects(source, scans, options)
    task.storage.write_bytes(task.key("template.pkl"), pickle.dumps(new_encoder(source, scans, options)))
    return specs


def _local_parts(task: _Task, folder: Path) -> list[tuple[Scanned, int]]:
    """The task's group of parts, each its scan (spooled rows downloaded into ``folder``) and first row id."""
    scans = task.scans()
    starts = offsets(scans)
    return [(task.local(scans[i], folder), starts[i]) for i in task.plan.groups[task.group]]


def count_group(spec: str) -> str:
    """Fit the encoder on a group's parts (one compacted fit); returns ``spec``."""
    task = _Task.of(spec)
    template = _read_pickle(task, "template.pkl")
    with tempfile.TemporaryDirectory(prefix="wukong-spool-") as folder:
        fit = count(template, _local_parts(task, Path(folder)))
    task.storage.write_bytes(task.key(f"fit-{task.group:04d}.pkl"), pickle.dumps(fit))
    return _done(spec, rows=sum(fit.rows.values()), train=fit.rows["train"])


def vocabulary(specs: list[str]) -> list[str]:
    """Merge every group's fit, in part order, into the fitted encoder. Returns ``specs``."""
    task = _Task.of(specs[0])
    template = _read_pickle(task, "template.pkl")
    fits = [_read_pickle(task, f"fit-{g:04d}.pkl") for g in range(len(task.plan.groups))]
    task.storage.write_bytes(task.key("encoder.pkl"), pickle.dumps(merged(template, fits)))
    return specs


def encode_group(spec: str) -> str:
    """Encode a group's parts into its own shards; returns ``spec``."""
    task = _Task.of(spec)
    encoder = _read_pickle(task, "encoder.pkl")
    tag = writer_tag(task.group, len(task.plan.groups))
    with tempfile.TemporaryDirectory(prefix="wukong-spool-") as folder:
        parts = _local_parts(task, Path(folder))
        written = encode(encoder, task.storage, task.plan.run_id, task.plan.ingest.options(), parts, tag)
    _write_json(task.storage, task.key(f"written-{task.group:04d}.json"), written.to_dict())
    shards = [shard for infos in written.shards.values() for shard in infos]
    return _done(spec, rows=sum(shard.rows for shard in shards), shards=len(shards))


def commit_run(specs: list[str]) -> dict[str, Any]:
    """Write the manifest (the commit point), then remove the run's staging; returns the ingest summary."""
    task = _Task.of(specs[0])
    groups_written = range(len(task.plan.groups))
    written = [Written.from_dict(_read_json(task.storage, task.key(f"written-{g:04d}.json"))) for g in groups_written]
    ingest = task.plan.ingest
    description, encoder = ingest.open().describe(), _read_pickle(task, "encoder.pkl")
    manifest = commit(task.storage, task.plan.run_id, description, encoder, task.scans(), written, ingest.options())
    task.storage.delete([o.key for o in task.storage.list(f"{STAGING}/{task.plan.run_id}/")])
    return ingest.summary(manifest)


PART_STAGES = {"scan": scan_group, "count": count_group, "encode": encode_group}
GATHER_STAGES = {"offsets": check_offsets, "vocabulary": vocabulary}
