"""The tensor-attention page's examples run as doctests (issue 16: the SDPA comparison and the
"using it in a model" layer, whose forward and backward run on sci)."""

import doctest
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[2] / "docs" / "results" / "tensor_attention.rst"


def test_tensor_attention_page_examples_run():
    pytest.importorskip("torch")
    result = doctest.testfile(
        str(PAGE), module_relative=False,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
    )
    assert result.attempted >= 15  # the examples are there, not silently dropped
    assert result.failed == 0
