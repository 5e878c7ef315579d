"""Ingest plan: start a fanned-out ingest (:mod:`wukong.pipeline.fanout`); one task spec per group of parts."""

from kfp import dsl

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def ingest_plan(
    source: str,
    input_uri: str,
    dataset_uri: str,
    rows: int,
    seed: int,
    tasks: int,
    partition: str = "",
    extend_vocabulary: str = "",
    split_by: str = "ratio",
) -> list:
    """Returns the items of the ingest loops: at most ``tasks`` task specs (JSON). ``partition``,
    ``extend_vocabulary`` and ``split_by`` as for the single ``ingest`` step (a time split is refused)."""
    from wukong.pipeline import fanout

    return fanout.plan(
        source,
        input_uri,
        dataset_uri,
        rows=rows,
        seed=seed,
        tasks=tasks,
        partition=partition,
        extend_vocabulary=extend_vocabulary,
        split_by=split_by,
    )
