"""The quantile sketch: every percentile within α of the exact one on the same data."""

from __future__ import annotations

import math
import sqlite3

from hypothesis import given, settings
from hypothesis import strategies as st

from hermetry.analytics.stats import percentile
from hermetry.model.sketch import ALPHA, Sketch, bucket_sql, sign_sql

QUANTILES = (0, 1, 5, 25, 50, 75, 90, 95, 99, 99.9, 100)
TOLERANCE = ALPHA * (1 + 1e-9)

positive = st.floats(min_value=1e-6, max_value=1e12, allow_nan=False, allow_infinity=False)
nonneg = st.one_of(st.just(0.0), positive, st.integers(min_value=0, max_value=10**9).map(float))
samples = st.one_of(
    st.lists(nonneg, min_size=1, max_size=400),
    # heavy ties: a few distinct values repeated
    st.lists(st.sampled_from([0.0, 1.0, 3.5, 250.0, 1e7]), min_size=1, max_size=400),
    st.lists(positive, min_size=1, max_size=1).map(lambda v: v * 5),  # one value, several times
)


def _within(approx: float | None, exact: float | None) -> bool:
    assert approx is not None and exact is not None
    return abs(approx - exact) <= TOLERANCE * abs(exact) + 1e-12


@settings(max_examples=300, deadline=None)
@given(samples)
def test_every_quantile_within_alpha_of_the_exact_one(values: list[float]) -> None:
    sketch = Sketch.of(values)
    exact = sorted(values)
    assert sketch.count == len(values)
    assert sketch.min == exact[0] and sketch.max == exact[-1]
    assert math.isclose(sketch.sum, math.fsum(values), rel_tol=1e-9, abs_tol=1e-9)
    for q in QUANTILES:
        assert _within(sketch.quantile(q / 100), percentile(exact, q)), q


@settings(max_examples=150, deadline=None)
@given(st.lists(samples, min_size=1, max_size=6))
def test_merged_sketches_equal_one_sketch_of_everything(parts: list[list[float]]) -> None:
    merged = Sketch()
    for part in parts:
        merged.merge(Sketch.from_bytes(Sketch.of(part).to_bytes()))
    whole = Sketch.of(v for part in parts for v in part)
    assert merged.buckets() == whole.buckets()
    at_once = Sketch.merged(Sketch.of(part).to_bytes() for part in parts)
    assert at_once.buckets() == whole.buckets() and at_once.count == whole.count
    assert (merged.count, merged.zero, merged.min, merged.max) == (whole.count, whole.zero, whole.min, whole.max)
    exact = sorted(v for part in parts for v in part)
    for q in QUANTILES:
        assert _within(merged.quantile(q / 100), percentile(exact, q))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(nonneg, positive.map(lambda v: -v)), min_size=1, max_size=200))
def test_sql_buckets_build_the_same_sketch(values: list[float]) -> None:
    """A rebuild groups by bucket in SQL: the sketch it builds is the one Python builds."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (x REAL)")
    conn.executemany("INSERT INTO t VALUES (?)", [(v,) for v in values])
    from_sql = Sketch()
    for sign, index, n, lo, hi, total in conn.execute(
        f"SELECT {sign_sql('x')}, {bucket_sql('x')}, COUNT(*), MIN(x), MAX(x), SUM(x) FROM t "
        f"GROUP BY 1, 2"
    ):
        from_sql.add_bucket(sign, index, n, lo, hi, total)
    assert from_sql.buckets() == Sketch.of(values).buckets()
    assert from_sql.count == len(values)


def test_negative_values_and_empty() -> None:
    assert Sketch().quantile(0.5) is None
    s = Sketch.of([-100.0, -10.0, 0.0, 10.0, 100.0])
    assert s.quantile(0) == -100.0 and s.quantile(1) == 100.0 and s.quantile(0.5) == 0.0
    assert _within(s.quantile(0.25), -10.0)
    assert s.count_above(50) == 1 and s.count_above(-1000) == 5 and s.count_above(100) == 0


def test_serialized_form_is_compact() -> None:
    s = Sketch.of(float(v) for v in range(1, 100_000))
    data = s.to_bytes()
    assert len(data) < 4 * 600 + 64  # ~580 buckets from 1 to 1e5 at 1 %
    assert Sketch.from_bytes(data).buckets() == s.buckets()
    assert Sketch.from_bytes(Sketch().to_bytes()).quantile(0.5) is None


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False), min_size=0, max_size=50),
                min_size=1, max_size=8),
       st.lists(st.integers(min_value=1, max_value=2**40), max_size=3))
def test_merging_many_serialized_sketches_adds_every_bucket(parts: list[list[float]], heavy: list[int]) -> None:
    """``Sketch.merged`` (big-integer lanes) == merging one by one: negative and zero values, empty
    sketches, counts that need 64 bits in one sketch, and counts whose sum needs them (3 × 2^31)."""
    sketches = [Sketch.of(part) for part in parts]
    for n in heavy:  # a bucket counted n times: wide (u64) serialization above 2^32 − 1
        s = Sketch()
        s.add(42.0, n)
        sketches.append(s)
    for _ in range(3):
        s = Sketch()
        s.add(-7.5, 2**31 + 5)
        sketches.append(s)
    one_by_one = Sketch()
    for s in sketches:
        one_by_one.merge(Sketch.from_bytes(s.to_bytes()))
    at_once = Sketch.merged(memoryview(s.to_bytes()) if i % 2 else s.to_bytes() for i, s in enumerate(sketches))
    assert at_once.buckets() == one_by_one.buckets()
    assert (at_once.count, at_once.zero, at_once.min, at_once.max) == (one_by_one.count, one_by_one.zero,
                                                                       one_by_one.min, one_by_one.max)
    assert math.isclose(at_once.sum, one_by_one.sum, rel_tol=1e-12, abs_tol=1e-6)
    assert Sketch.from_bytes(at_once.to_bytes()).buckets() == one_by_one.buckets()


def test_parsed_sketches_merge_into_several_sums() -> None:
    """``Sketch.parse`` once, ``merged_parsed`` into any number of totals: each equals merging those
    sketches one by one (what the report does for a key that belongs to several slices)."""
    parts = [Sketch.of([1.0, 2.0, 300.0]), Sketch.of([-4.0, 0.0, 5e6]), Sketch(), Sketch.of([7.0] * 50)]
    parsed = [Sketch.parse(s.to_bytes()) for s in parts]
    assert parsed[2] is None  # an empty sketch adds nothing
    kept = [p for p in parsed if p is not None]
    for chosen in (kept, kept[:1], kept[1:], kept[::2]):
        one_by_one = Sketch()
        for p in chosen:
            one_by_one.merge(parts[parsed.index(p)])
        merged = Sketch.merged_parsed(chosen)
        assert merged.buckets() == one_by_one.buckets()
        assert (merged.count, merged.zero, merged.min, merged.max) == (one_by_one.count, one_by_one.zero,
                                                                       one_by_one.min, one_by_one.max)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=20),
                         min_size=0, max_size=5), min_size=0, max_size=6))
def test_groups_merged_once_equal_every_part_merged_to_the_last_bit(groups: list[list[list[float]]]) -> None:
    """``merged_groups`` of each group's ``merged_parsed`` (what the report does: each key's rollup
    rows merged once, each slice from its keys) == ``merged_parsed`` of all the parts in order —
    the sum too, bit for bit (floats: 0.1 + 0.2 + 0.3 ≠ 0.1 + (0.2 + 0.3)), so the report's figures
    do not move by a last digit."""
    parsed = [[p for p in (Sketch.parse(Sketch.of(values).to_bytes()) for values in group) if p is not None]
              for group in groups]
    everything = Sketch.merged_parsed([p for group in parsed for p in group])
    merged = Sketch.merged_groups((Sketch.merged_parsed(group), [p[2] for p in group]) for group in parsed)
    assert merged.buckets() == everything.buckets()
    assert (merged.count, merged.zero, merged.min, merged.max) == (everything.count, everything.zero,
                                                                   everything.min, everything.max)
    assert merged.sum.hex() == everything.sum.hex()
    assert [merged.quantile(q) for q in (0.0, 0.5, 0.95, 1.0)] == [everything.quantile(q) for q in (0.0, 0.5, 0.95, 1.0)]
