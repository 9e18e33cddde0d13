import pathlib

import numpy
import pytest

#: The repository root (bindings/python/tests/ is three levels below it).
ROOT = pathlib.Path(__file__).resolve().parents[3]


@pytest.fixture
def rng(request):
    """A generator seeded from the test's name: fresh values per test, reproducible runs."""
    return numpy.random.default_rng(sum(request.node.name.encode()))
