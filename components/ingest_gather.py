"""Ingest gather: the step between two loops of a fanned-out ingest (offsets, or vocabulary)."""

from kfp import dsl

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def ingest_gather(stage: str, groups: list) -> list:
    """Runs ``stage`` over every group's results (offsets: check rejects; vocabulary: merge the counts);
    returns ``groups``, the items of the next loop."""
    from wukong.pipeline import fanout

    return fanout.GATHER_STAGES[stage]([str(g) for g in groups])
