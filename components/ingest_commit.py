"""Ingest commit: the manifest of a fanned-out ingest, written last (a ``Dataset`` artifact, as ``ingest``'s)."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def ingest_commit(groups: list, dataset: Output[Dataset]) -> int:
    """Publish the dataset; the artifact's metadata holds its URI and manifest summary. Returns training rows."""
    import json

    from wukong.pipeline import fanout

    summary = fanout.commit_run([str(g) for g in groups])
    dataset.metadata.update(fanout.artifact_metadata(summary))
    with open(dataset.path, "w") as f:
        json.dump(summary, f, indent=1)
    return int(summary["rows"]["train"])
