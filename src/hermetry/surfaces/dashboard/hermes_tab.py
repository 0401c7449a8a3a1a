"""The Telemetry tab in ``hermes dashboard``: install and remove its folder.

Hermes discovers dashboard tabs only in ``$HERMES_HOME/plugins/NAME/dashboard/`` (never through
pip entry points) and serves a user plugin's tab only when NAME is in ``plugins.enabled`` —
which ``hermes plugins enable hermetry`` already does. So hermetry writes that folder:

* ``manifest.json`` — the tab (label, icon, position after Hermes' own Analytics);
* ``dist/index.js`` — one plain script: the vendored charting library, the same views as
  ``hermetry dashboard`` (``static/app.js``) and a small React component from Hermes' plugin
  SDK (``window.__HERMES_PLUGIN_SDK__``) that mounts them; ``dist/style.css`` likewise;
* ``plugin_api.py`` — a FastAPI ``router`` (mounted at ``/api/plugins/hermetry/``) answering
  the same endpoints with the same :class:`~hermetry.surfaces.dashboard.api.DashboardApi`, over
  the telemetry file the CLI reads. Hermes' session token guards it like its own routes.

The folder has no ``plugin.yaml``, so Hermes' agent loader ignores it (the agent plugin is the
pip entry point). A marker file says hermetry wrote it: removal never deletes a folder it did
not write.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from hermetry import config
from hermetry.surfaces.dashboard.server import static_dir

PLUGIN_NAME = "hermetry"
MARKER = ".hermetry-tab"

API_FILE = '''"""hermetry's Telemetry tab: the dashboard's JSON for `hermes dashboard` (written by
`hermetry dashboard --install-hermes-tab`; remove with --remove-hermes-tab)."""
from hermetry.surfaces.dashboard.hermes_router import build_router

router = build_router()
'''

TAB_GLUE = r'''
/* hermetry Telemetry tab: mounts the hermetry views inside Hermes' dashboard. */
(function () {
  "use strict";
  var SDK = window.__HERMES_PLUGIN_SDK__;
  var registry = window.__HERMES_PLUGINS__;
  if (!SDK || !registry || !window.HermetryDashboard) return;
  var React = SDK.React;
  function TelemetryTab() {
    var ref = SDK.hooks.useRef(null);
    SDK.hooks.useEffect(function () {
      var handle = window.HermetryDashboard.mount(ref.current, {
        apiBase: "/api/plugins/hermetry",
        fetchJSON: function (url) { return SDK.fetchJSON(url); },
      });
      return function () { handle.destroy(); };
    }, []);
    return React.createElement("div", {ref: ref, id: "hermetry-tab", "data-hermetry-tab": "1"});
  }
  registry.register("hermetry", TelemetryTab);
})();
'''


def tab_dir(hermes_home: Path | None = None) -> Path:
    return (hermes_home or config.hermes_home()) / "plugins" / PLUGIN_NAME / "dashboard"


def install_hermes_tab(hermes_home: Path | None = None) -> Path:
    """Write (or refresh) the tab's folder; returns it."""
    from hermetry import __version__

    target = tab_dir(hermes_home)
    if target.exists() and not (target / MARKER).exists():
        raise FileExistsError(f"{target} exists and was not written by hermetry; not touching it")
    static = static_dir()
    (target / "dist").mkdir(parents=True, exist_ok=True)
    manifest = {
        "name": PLUGIN_NAME,
        "label": "Telemetry",
        "description": "hermetry: latency, tokens, cost and outcomes of this agent's runs",
        "icon": "Activity",
        "version": __version__,
        "tab": {"path": "/telemetry", "position": "after:analytics"},
        "entry": "dist/index.js",
        "css": "dist/style.css",
        "api": "plugin_api.py",
    }
    bundle = "\n;\n".join([
        (static / "vendor" / "uPlot.iife.min.js").read_text(encoding="utf-8"),
        (static / "app.js").read_text(encoding="utf-8"),
        TAB_GLUE,
    ])
    css = (static / "vendor" / "uPlot.min.css").read_text(encoding="utf-8") + "\n" + \
        (static / "app.css").read_text(encoding="utf-8")
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    (target / "dist" / "index.js").write_text(bundle, encoding="utf-8")
    (target / "dist" / "style.css").write_text(css, encoding="utf-8")
    (target / "dist" / "uPlot.LICENSE").write_text((static / "vendor" / "uPlot.LICENSE").read_text(encoding="utf-8"),
                                                   encoding="utf-8")
    (target / "plugin_api.py").write_text(API_FILE, encoding="utf-8")
    (target / MARKER).write_text(f"written by hermetry {__version__}\n", encoding="utf-8")
    return target


def remove_hermes_tab(hermes_home: Path | None = None) -> Path | None:
    """Remove the tab's folder (only if hermetry wrote it); returns it, or None if absent."""
    target = tab_dir(hermes_home)
    if not target.exists():
        return None
    if not (target / MARKER).exists():
        raise FileExistsError(f"{target} was not written by hermetry; not removing it")
    shutil.rmtree(target)
    parent = target.parent
    try:
        parent.rmdir()  # plugins/hermetry/ if nothing else is in it
    except OSError:
        pass
    return target
