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
) -> int:
    """Prepare the dataset (of one partition of the input, when ``partition`` says; keeping the ids of
    ``extend_vocabulary``'s vocabulary, when given); the artifact's metadata holds its URI and manifest
    summary. Returns training rows."""
    import json

    from wukong.pipeline import fanout, steps

    summary = steps.ingest(
        source, input_uri, dataset_uri, rows=rows, seed=seed, partition=partition, extend_vocabulary=extend_vocabulary
    )
    dataset.metadata.update(fanout.artifact_metadata(summary))
    dataset.metadata.update({key: summary[key] for key in ("partition", "vocabulary_added")})
    with open(dataset.path, "w") as f:
        json.dump(summary, f, indent=1)
    return int(summary["rows"]["train"])
