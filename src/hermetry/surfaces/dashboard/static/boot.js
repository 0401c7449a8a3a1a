/* Standalone page (hermetry dashboard): mount the views on #app. (The CSP allows no inline script.) */
(function () {
  "use strict";
  var root = document.getElementById("app");
  if (root && window.HermetryDashboard) window.HermetryDashboard.mount(root, {apiBase: "api"});
})();
