"""The Telemetry tab's backend inside ``hermes dashboard``: a FastAPI router over ``DashboardApi``.

Imported by the ``plugin_api.py`` that ``hermetry dashboard --install-hermes-tab`` writes;
Hermes mounts it at ``/api/plugins/hermetry/`` behind its own session-token check. FastAPI is
Hermes' dependency, not hermetry's, so it is imported only here. Handlers are plain functions:
FastAPI runs them in its thread pool, off the event loop, since a report reads the store.
"""

# No ``from __future__ import annotations``: FastAPI reads the handler's annotations as objects
# (``Request`` is imported inside ``build_router``, so a string could not be resolved).
from pathlib import Path
from typing import Any

from hermetry.surfaces.dashboard.api import FIRST_VIEW, ApiError, DashboardApi


def build_router(db: str | Path | None = None) -> Any:
    """An ``APIRouter`` answering ``GET /{endpoint}`` like ``hermetry dashboard``'s ``/api/…``."""
    from fastapi import APIRouter, Request
    from fastapi.responses import JSONResponse

    from hermetry import config

    api = DashboardApi(db if db is not None else config.store())
    api.prepare(*FIRST_VIEW)  # while `hermes dashboard` starts, as `hermetry dashboard` does
    router = APIRouter()

    @router.get("/{endpoint}")
    def answer(endpoint: str, request: Request) -> Any:
        params = {k: v for k, v in request.query_params.items() if k != "token"}
        try:
            return JSONResponse(api.handle(endpoint, params), headers={"Cache-Control": "no-store"})
        except ApiError as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        except Exception as exc:  # one line, never a traceback page
            return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=500)

    return router
