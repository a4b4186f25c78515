"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

# The shared data lives beside the checkout, never inside it (see ../shared/data/README.md).
TINY_SUBSET = Path(__file__).resolve().parents[1].parent / "shared/data/tiny-imagenet-200-subset20"


@pytest.fixture(scope="session")
def tiny_subset_root() -> Path:
    """Root of the 20-class Tiny ImageNet subset; skips the test when it is not present."""
    if not (TINY_SUBSET / "wnids.txt").is_file():
        pytest.skip(f"shared Tiny ImageNet subset not found at {TINY_SUBSET}")
    return TINY_SUBSET
