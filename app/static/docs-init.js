// Bootstraps Swagger UI from assets served by this app (no CDN).
window.addEventListener("load", function () {
  var urls = __URLS__;
  // `/docs?version=1` opens that version's document. Swagger UI's own query config stays
  // off (its default since 4.1.3): it would let a link load a document from anywhere.
  var wanted = new URLSearchParams(window.location.search).get("version");
  var primary = urls.find(function (u) {
    // endsWith: the app may be mounted under a path prefix (SCRIPT_NAME).
    return wanted !== null && u.url.endsWith("/v" + wanted + "/openapi.json");
  });
  window.ui = SwaggerUIBundle({
    urls: urls,
    "urls.primaryName": primary ? primary.name : urls[0].name,
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout",
    validatorUrl: null,
    displayRequestDuration: true,
  });
});
