"""Shared fixtures: the tiny preset and its schema (multi-hot features included)."""

from __future__ import annotations

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
