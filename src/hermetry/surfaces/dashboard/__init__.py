"""See it: ``hermetry dashboard`` and the Telemetry tab inside ``hermes dashboard``.

* ``api.py`` — the JSON endpoints, each a thin view over one analytics call (shared by both);
* ``server.py`` — the standalone server (standard library; loopback, or a token elsewhere);
* ``hermes_tab.py`` — installs/removes ``$HERMES_HOME/plugins/hermetry/dashboard/``;
* ``static/`` — the page: plain scripts, the vendored charting library (``static/vendor/``).

docs/dashboard.md describes the views, the live refresh and its cost.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULT_REFRESH_S", "ApiError", "DashboardApi", "DashboardServer", "serve"]

#: How often an open page asks ``/api/version`` for new data (seconds); ``--refresh`` changes it.
DEFAULT_REFRESH_S = 5.0


def __getattr__(name: str) -> Any:
    # Imported on first use: every ``hermetry`` command builds the dashboard's arguments
    # (``cli.py``), and the server (http.server, the analytics) would add ~30 ms to each start-up.
    if name in ("ApiError", "DashboardApi"):
        from hermetry.surfaces.dashboard import api

        return getattr(api, name)
    if name in ("DashboardServer", "serve"):
        from hermetry.surfaces.dashboard import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
