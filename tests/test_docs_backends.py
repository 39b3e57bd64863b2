"""The Backends page's examples run as doctests (issue 13: the torch example must run)."""

import doctest
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "docs" / "backends.rst"


def test_backends_page_examples_run():
    pytest.importorskip("torch")
    result = doctest.testfile(
        str(PAGE), module_relative=False,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
    )
    assert result.attempted >= 8
    assert result.failed == 0
