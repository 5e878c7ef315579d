"""Shared fixtures: the tiny preset and its schema (multi-hot features included)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from wukong.config import Config, load_config
from wukong.schema import FeatureSchema


@pytest.fixture
def tiny() -> Config:
    return load_config("tiny")


@pytest.fixture
def tiny_schema(tiny: Config) -> FeatureSchema:
    return tiny.data.synthetic_schema()


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


MOVIELENS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml-latest-small"


@pytest.fixture(scope="session")
def movielens() -> Path:
    """The real ml-latest-small copy beside the project (never committed into it)."""
    if not (MOVIELENS / "ratings.csv").is_file():
        pytest.skip(f"the shared MovieLens copy is absent ({MOVIELENS})")
    return MOVIELENS
