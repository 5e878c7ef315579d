"""Warm start: which model a recurring run starts from (the registry's production version, typically)."""

from typing import NamedTuple

from kfp import dsl

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def warm_start(init_from: str, registry_uri: str, registered_name: str) -> NamedTuple(
    "Base", [("folder", str), ("label", str)]
):
    """Resolves ``init_from`` once for the whole run (``production``: the version in production now, a
    cold start when there is none): ``folder`` ('' for a cold start) goes to ingest (whose vocabulary it
    extends) and to train (whose weights it starts from); ``label`` says which it is."""
    from collections import namedtuple

    from wukong.pipeline import steps

    base = steps.warm_start(init_from, registry_uri, registered_name)
    return namedtuple("Base", ["folder", "label"])(base["folder"], base["label"])
