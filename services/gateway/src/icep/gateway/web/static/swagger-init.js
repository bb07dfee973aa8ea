// Starts Swagger UI on the gateway's merged OpenAPI document. A file of its own rather than an inline
// script: the portal's Content-Security-Policy allows scripts from the gateway only.
"use strict";
window.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
    deepLinking: true,
    displayOperationId: true,
    showExtensions: true,
    // Authorize keeps its token in local storage until Logout: a reload keeps it, and the capacity chart
    // page (/docs/capacity) uses it too.
    persistAuthorization: true,
    // The default validator badge asks a public service about the document: nothing leaves the gateway.
    validatorUrl: null,
  });
});
