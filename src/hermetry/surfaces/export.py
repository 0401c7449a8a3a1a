"""``export_rows()``: the raw event rows of one table, as JSON Lines, CSV or Parquet.

The rows are the store's own columns (docs/telemetry-model.md), unchanged: timestamps in epoch
milliseconds, durations in ms, ``null`` (JSON, Parquet) or an empty field (CSV) for "not
captured". A row belongs to the window when it started in it. Parquet needs the optional
``pyarrow`` dependency: ``pip install 'hermetry[parquet]'``.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from hermetry.analytics.query import dialect_of, window_clause
from hermetry.stores.reader import Db, open_db

EXPORT_TABLES = ("api_calls", "tool_calls", "turns", "sessions")
EXPORT_FORMATS = ("jsonl", "csv", "parquet")
BATCH_ROWS = 5_000

#: ``progress(rows_done, rows_total)`` after each batch.
Progress = Callable[[int, int], None]


class ExportError(Exception):
    """The export cannot be done as asked (unknown table or format, missing pyarrow, …)."""


class ExportWriteError(ExportError, OSError):
    """The output could not be written (disk full, read-only, …): an environment error."""


def _scope(since_ms: float | None, until_ms: float | None) -> tuple[str, list[Any]]:
    where, params = window_clause(since_ms, until_ms)
    return f" WHERE {where}", params


def _columns(conn: sqlite3.Connection, table: str) -> list[tuple[str, str]]:
    """(name, declared type) of every column, generated ones (``turns.wall_ms``) included."""
    return [(r[0], (r[1] or "").upper()) for r in conn.execute(dialect_of(conn).columns_sql(table))]


def _batches(conn: sqlite3.Connection, table: str, columns: list[str], where: str,
             params: list[float]) -> Iterator[list[tuple[Any, ...]]]:
    cursor = conn.cursor()
    cursor.row_factory = None
    cursor.execute(f"SELECT {', '.join(columns)} FROM {table}{where} ORDER BY started_at_ms NULLS FIRST", params)
    while batch := cursor.fetchmany(BATCH_ROWS):
        yield batch


def _parquet_type(declared: str) -> Any:
    import pyarrow as pa

    if "INT" in declared:
        return pa.int64()
    if "REAL" in declared or "FLOA" in declared or "DOUB" in declared:
        return pa.float64()
    return pa.string()


def check_output(output: str | Path, fmt: str = "jsonl") -> Path:
    """Refuse an output path that cannot be written before anything is read or created."""
    path = Path(str(output)).expanduser()
    if path.is_dir():
        raise ExportError(f"--output {output} is a folder (give a file name, e.g. {path / ('rows.' + fmt)})")
    if not path.parent.is_dir():
        what = "does not exist" if not path.parent.exists() else "is not a folder"
        raise ExportError(f"--output {output}: the folder {path.parent} {what} (create it first, or write elsewhere)")
    return path


def _require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError as exc:
        raise ExportError(
            "Parquet export needs pyarrow, which is not installed. "
            "Install it with: pip install 'hermetry[parquet]' (or use --format jsonl or csv)"
        ) from exc


def export_rows(
    db: Db,
    table: str = "api_calls",
    fmt: str = "jsonl",
    output: str | Path | None = None,
    *,
    since_ms: float | None = None,
    until_ms: float | None = None,
    progress: Progress | None = None,
) -> int:
    """Write ``table``'s rows in the window to ``output`` (a path; None or ``-``: stdout).

    Returns the number of rows written. Raises :class:`ExportError` for an unknown table or
    format, for Parquet without pyarrow, and for Parquet to stdout.
    """
    if table not in EXPORT_TABLES:
        raise ExportError(f"unknown table {table!r} (use one of {', '.join(EXPORT_TABLES)})")
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"unknown format {fmt!r} (use one of {', '.join(EXPORT_FORMATS)})")
    to_stdout = output is None or str(output) == "-"
    if fmt == "parquet":
        _require_pyarrow()
        if to_stdout:
            raise ExportError("Parquet is a binary file: give --output PATH")
    if not to_stdout:
        assert output is not None
        check_output(output, fmt)
    where, params = _scope(since_ms, until_ms)
    with open_db(db) as conn:
        if conn is None:
            raise ExportError(f"no telemetry file at {db}")
        columns = _columns(conn, table)
        names = [name for name, _ in columns]
        total = conn.execute(f"SELECT COUNT(*) FROM {table}{where}", params).fetchone()[0]
        batches = _batches(conn, table, names, where, params)
        if fmt == "parquet":
            try:
                return _write_parquet(Path(str(output)), columns, batches, total, progress)
            except OSError as exc:
                raise ExportWriteError(f"cannot write {output}: {exc.strerror or exc}") from exc
        stream: IO[str]
        if to_stdout:
            return _write_text(sys.stdout, fmt, names, batches, total, progress)
        try:
            with open(Path(str(output)), "w", encoding="utf-8", newline="") as stream:
                return _write_text(stream, fmt, names, batches, total, progress)
        except OSError as exc:
            raise ExportWriteError(f"cannot write {output}: {exc.strerror or exc}") from exc


def _write_text(stream: IO[str], fmt: str, names: list[str], batches: Iterator[list[tuple[Any, ...]]],
                total: int, progress: Progress | None) -> int:
    done = 0
    writer = csv.writer(stream) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(names)
    for batch in batches:
        if writer is not None:
            writer.writerows(batch)
        else:
            stream.writelines(json.dumps(dict(zip(names, row, strict=True))) + "\n" for row in batch)
        done += len(batch)
        if progress:
            progress(done, total)
    return done


def _write_parquet(path: Path, columns: list[tuple[str, str]], batches: Iterator[list[tuple[Any, ...]]],
                   total: int, progress: Progress | None) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(name, _parquet_type(declared)) for name, declared in columns])
    done = 0
    with pq.ParquetWriter(str(path), schema) as writer:
        for batch in batches:
            arrays = [pa.array(list(col), type=schema.field(i).type) for i, col in enumerate(zip(*batch, strict=True))]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            done += len(batch)
            if progress:
                progress(done, total)
    return done


def export_otlp(db: Db, *, since_ms: float | None = None, until_ms: float | None = None,
                progress: Callable[[int], None] | None = None) -> Any:
    """Replay the recorded (and imported) history in the window to an OpenTelemetry collector, as
    the same spans and metrics live export sends (docs/opentelemetry.md); the endpoint and the rest
    come from the ``OTEL_*`` variables. Returns a :class:`hermetry.sinks.otlp.ReplayResult`.
    Raises :class:`ExportError` when the extra is missing or the configuration is unusable."""
    from hermetry.analytics.events import stored_events
    from hermetry.recorder.sink import SinkDisabled
    from hermetry.sinks import sdk_installed

    if not sdk_installed():
        raise ExportError("OTLP export needs the OpenTelemetry SDK: pip install 'hermetry[otlp]'")
    import logging

    from hermetry.sinks.otlp import OTLPConfig, OTLPSink, replay

    # the SDK logs every failed batch; the result line below says it once, with the counts
    logging.getLogger("opentelemetry.exporter").setLevel(logging.CRITICAL)

    try:
        sink = OTLPSink(OTLPConfig.from_env())
    except SinkDisabled as exc:
        raise ExportError(str(exc)) from exc
    try:
        return replay(stored_events(db, since_ms=since_ms, until_ms=until_ms), sink, progress=progress)
    finally:
        sink.close()
