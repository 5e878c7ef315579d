"""Ingest parts: one loop task of a fanned-out ingest, on its group of parts (scan, count or encode)."""

from kfp import dsl

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def ingest_parts(stage: str, group: str) -> str:
    """Runs ``stage`` (scan, count or encode) on the group ``group`` names; returns ``group``."""
    from wukong.pipeline import fanout

    return fanout.PART_STAGES[stage](group)
