"""Shared fixtures."""

from __future__ import annotations

import pytest

import pyglmm as pg


@pytest.fixture(scope="session")
def salamander():
    return pg.datasets.load_salamander()


@pytest.fixture(scope="session")
def booth_hobert():
    return pg.datasets.load_booth_hobert()
