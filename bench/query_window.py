"""4b · Query scale, an everyday window: ``bench.query.run_window`` (``python -m bench --only window``)."""

from bench.query import run_window as run

__all__ = ["run"]
