"""See it: ``hermetry dashboard`` and the Telemetry tab inside ``hermes dashboard``.

* ``api.py`` — the JSON endpoints, each a thin view over one analytics call (shared by both);
* ``server.py`` — the standalone server (standard library; loopback, or a token elsewhere);
* ``hermes_tab.py`` — installs/removes ``$HERMES_HOME/plugins/hermetry/dashboard/``;
* ``static/`` — the page: plain scripts, the vendored charting library (``static/vendor/``).

docs/dashboard.md describes the views, the live refresh and its cost.
"""

from hermetry.surfaces.dashboard.api import ApiError, DashboardApi
from hermetry.surfaces.dashboard.server import DashboardServer, serve

__all__ = ["ApiError", "DashboardApi", "DashboardServer", "serve"]
