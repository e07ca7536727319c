// Bootstraps Swagger UI from assets served by this app (no CDN).
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    urls: __URLS__,
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout",
    validatorUrl: null,
    displayRequestDuration: true,
  });
});
