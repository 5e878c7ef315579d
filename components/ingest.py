"""Ingest: raw data → WebDataset shards + manifest at ``dataset_uri`` (a ``Dataset`` artifact)."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def ingest(
    source: str,
    input_uri: str,
    dataset_uri: str,
    rows: int,
    seed: int,
    dataset: Output[Dataset],
    partition: str = "",
    extend_vocabulary: str = "",
    split_by: str = "ratio",
    cardinality: int = 0,
    teacher: dict = {},  # noqa: B006 (KFP parameters are declared by their defaults)
) -> int:
    """Prepare the dataset (of one partition of the input, when ``partition`` says; keeping the ids of
    ``extend_vocabulary``'s vocabulary, when given; split by ``split_by``: ratio or time); ``cardinality``
    and ``teacher`` shape the generated sources (``wukong data prepare --cardinality``, ``--teacher-*``
    by field name: ``{"order": 4, "temperature": 0.5}``). The artifact's metadata holds its URI and
    manifest summary. Returns training rows."""
    from wukong.pipeline import steps
    from wukong.pipeline.ingest import record_dataset

    summary = steps.ingest(
        source,
        input_uri,
        dataset_uri,
        rows=rows,
        seed=seed,
        partition=partition,
        extend_vocabulary=extend_vocabulary,
        split_by=split_by,
        cardinality=cardinality,
        teacher=teacher,
    )
    return record_dataset(dataset, summary)
