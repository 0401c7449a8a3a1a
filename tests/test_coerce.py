"""model/coerce.py: what a value from outside becomes (the writer's normalizers call these for
every field, so each has a fast path for the common type; the answers are the same)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hermetry.model.coerce import as_float, as_id, as_int, as_str


@pytest.mark.parametrize(("value", "want"), [
    (1.5, 1.5), (-0.0, -0.0), (float("nan"), None), (float("inf"), None), (float("-inf"), None),
    (3, 3.0), ("2.5", 2.5), ("x", None), (None, None), (True, None), (10**400, None), ([1.0], None),
])
def test_as_float(value: Any, want: float | None) -> None:
    got = as_float(value)
    assert got == want and type(got) is type(want)


@pytest.mark.parametrize(("value", "want"), [
    (7, 7), (2**63 - 1, 2**63 - 1), (2**63, None), (-(2**63) + 1, -(2**63) + 1), (-(2**63), None),
    (True, None), (False, None), (None, None), (3.9, 3), ("12", 12), ("x", None), (float("nan"), None),
])
def test_as_int(value: Any, want: int | None) -> None:
    got = as_int(value)
    assert got == want and type(got) is type(want)


@pytest.mark.parametrize(("value", "strip", "want"), [
    ("gpt", False, "gpt"), ("", False, None), (" a ", False, " a "), (" a ", True, "a"), ("  ", True, None),
    (3, False, "3"), (None, False, None), ([1], False, None), ({"a": 1}, False, None), (("a",), False, None),
])
def test_as_str(value: Any, strip: bool, want: str | None) -> None:
    assert as_str(value, strip) == want


class _Str(str):
    pass


def test_subclasses_take_the_general_path() -> None:
    assert as_str(_Str("x")) == "x" and as_id(_Str("")) is None
    assert as_float(_Float(2.0)) == 2.0 and as_int(_Int(5)) == 5


class _Float(float):
    pass


class _Int(int):
    pass


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_any_float_is_itself_when_finite(f: float) -> None:
    assert as_float(f) == (f if math.isfinite(f) else None)
