from __future__ import annotations

import pytest

from personalization import selectors


@pytest.fixture(autouse=True)
def _fresh_category_rules():
    """Neuron ids are reused between tests on SQLite: never read another test's cached mapping."""
    selectors._category_rules_cache.clear()
    yield
    selectors._category_rules_cache.clear()
