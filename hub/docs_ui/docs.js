// The hub's /docs page: Swagger UI (vendored in this folder, hub/docs_ui/vendored.txt) on /openapi.json.
// Everything comes from the hub itself: no CDN, and no validator badge (validatorUrl: null would otherwise
// be validator.swagger.io). URLs are relative, so the page also works behind a proxy's path prefix.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: new URL("openapi.json", document.baseURI).href,
    dom_id: "#swagger-ui",
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    deepLinking: true,
    validatorUrl: null,
    displayOperationId: true,
    defaultModelsExpandDepth: 0,
  });
});
