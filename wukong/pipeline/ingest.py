"""What the pipelines' two ingests share: the one step (:func:`wukong.pipeline.steps.ingest`) and the
fanned-out one (:mod:`wukong.pipeline.fanout`) take the same request, publish the same dataset for it,
and report it the same way (the ``Dataset`` artifact's metadata that the later steps and the console
read)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from wukong.data.errors import DataError
from wukong.data.manifest import Manifest
from wukong.data.prepare import PrepareOptions
from wukong.data.sources import GENERATED, Source, open_source

FANNED_OUT_SPLITS = ("ratio",)  # see check_fanned_out


@dataclass(frozen=True)
class Ingest:
    """One ingest, its partition resolved: what it reads, where it publishes, how it prepares.

    Build it with :meth:`of`, once per run: ``partition=newest`` then names the same folder for every
    task of a fanned-out ingest, even when a newer one lands meanwhile."""

    source: str
    input_uri: str  # the partition's folder when ``partition`` is set
    dataset_uri: str  # the partition's dataset (``<dataset_uri>/KEY=VALUE``) when ``partition`` is set
    rows: int = 0  # synthetic: rows to generate (0: 100,000); other sources: the first rows to read (0: all)
    seed: int = 0
    shard_rows: int = 200_000
    max_reject_ratio: float = 0.001
    split_by: str = "ratio"  # or "time": by the source's time column (see check_fanned_out)
    partition: str = ""  # the KEY=VALUE folder read, "" for the whole input
    extend_vocabulary: str = ""  # a model (or dataset) folder whose vocabulary ids to keep; "" for none
    cardinality: int = 0  # synthetic: ids per feature; teacher: the largest cardinality (0: the source's default)
    teacher: dict[str, Any] = field(default_factory=dict)  # teacher: TeacherConfig fields (``--teacher-*``)

    @classmethod
    def of(cls, source: str, input_uri: str, dataset_uri: str, partition: str = "", **settings: Any) -> Ingest:
        """``partition``: ``newest`` or a ``KEY=VALUE`` folder of ``input_uri`` to read alone, published at
        ``<dataset_uri>/KEY=VALUE`` (:mod:`wukong.pipeline.partitions`); empty: the whole input.
        ``settings``: the other fields (``rows``, ``seed``, ``split_by``, ``extend_vocabulary``, ...)."""
        if partition:
            from wukong.pipeline.partitions import resolve

            chosen = resolve(partition, input_uri, dataset_uri)
            partition, input_uri, dataset_uri = chosen.name, str(chosen.input_path), chosen.dataset_uri
        return cls(source, input_uri, dataset_uri, partition=partition, **settings)

    def open(self) -> Source:
        if self.cardinality and self.source not in GENERATED:
            raise DataError(f"ingest: cardinality applies to the {' and '.join(GENERATED)} sources, not {self.source}")
        path = Path(self.input_uri) if self.input_uri else None
        return open_source(
            self.source,
            path,
            rows=self.rows or None,
            seed=self.seed,
            cardinality=self.cardinality or None,
            teacher=self._teacher_config(),
        )

    def _teacher_config(self):
        """The teacher's shape from :attr:`teacher` (None: the default one), every key checked."""
        if not self.teacher:
            return None
        if self.source != "teacher":
            raise DataError(f"ingest: teacher settings apply to the teacher source only, not {self.source}")
        from wukong.data.sources.teacher import TeacherConfig

        known = [f.name for f in fields(TeacherConfig)]
        unknown = sorted(set(self.teacher) - set(known))
        if unknown:
            raise DataError(f"ingest: unknown teacher setting(s) {', '.join(unknown)}; known: {', '.join(known)}")
        return TeacherConfig(**self.teacher)

    def options(self) -> PrepareOptions:
        """Preparation options; the dataset at :attr:`dataset_uri` is replaced."""
        return PrepareOptions(
            seed=self.seed,
            shard_rows=self.shard_rows,
            max_reject_ratio=self.max_reject_ratio,
            split_by=self.split_by,
            overwrite=True,
            partition=self.partition or None,
            extend_vocabulary=self.extend_vocabulary or None,
        )

    def summary(self, manifest: Manifest) -> dict[str, Any]:
        """What the ingest reports about the dataset it published."""
        extends = manifest.preprocessing.get("vocabulary_extends", {}).get("features", {}).values()
        return {
            "uri": self.dataset_uri,
            "source": self.source,
            "run_id": manifest.run_id,
            "rows": {split: manifest.rows(split) for split in manifest.splits},
            "rows_rejected": manifest.source.get("rows_rejected", 0),
            "features": {"dense": len(manifest.schema.dense), "sparse": len(manifest.schema.sparse)},
            "bytes": manifest.bytes(),
            "partition": self.partition,
            "vocabulary_added": sum(change["added"] for change in extends) if self.extend_vocabulary else None,
        }


def check_fanned_out(split_by: str) -> None:
    """Refuse what the fanned-out ingest cannot do, before any of its tasks starts.

    A time split's cut-offs are quantiles of a sample drawn from every row's time in source order,
    and every part's count needs them: the fan-out would first have to stream the time column of the
    whole input through one task."""
    if split_by not in FANNED_OUT_SPLITS:
        raise DataError(
            f"split_by {split_by}: a fanned-out ingest (ingest_tasks >= 1) splits by ratio only; "
            "use one ingest step (ingest_tasks=0) or `wukong data prepare --split-by time`"
        )


ARTIFACT_KEYS = ("uri", "run_id", "rows", "rows_rejected", "features", "partition", "vocabulary_added")


def record_dataset(dataset: Any, summary: dict[str, Any]) -> int:
    """Fill an ingest step's ``Dataset`` artifact (a ``kfp.dsl.Dataset``) from its summary: the metadata
    the later steps read (``uri`` above all), the summary as its file. Returns the training rows."""
    dataset.metadata.update({key: summary[key] for key in ARTIFACT_KEYS})
    with open(dataset.path, "w") as f:
        json.dump(summary, f, indent=1)
    return int(summary["rows"]["train"])
