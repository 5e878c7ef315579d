"""Ingest commit: the manifest of a fanned-out ingest, written last (a ``Dataset`` artifact, as ``ingest``'s)."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def ingest_commit(groups: list, dataset: Output[Dataset]) -> int:
    """Publish the dataset; the artifact's metadata holds its URI and manifest summary. Returns training rows."""
    from wukong.pipeline import fanout
    from wukong.pipeline.ingest import record_dataset

    return record_dataset(dataset, fanout.commit_run([str(g) for g in groups]))
