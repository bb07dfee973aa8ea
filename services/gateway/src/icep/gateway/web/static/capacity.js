// The capacity chart page: gets a token (or takes the one Swagger UI's Authorize stored), asks the plans
// service for the timeline as SVG through the gateway, and shows it from a blob: URL.
"use strict";
(function () {
  var form = document.getElementById("capacity-form");
  var status = document.getElementById("capacity-status");
  var figure = document.getElementById("capacity-figure");
  var chart = document.getElementById("capacity-chart");
  var shown = null;

  // Swagger UI (persistAuthorization) keeps {"OAuth2": {"token": {"access_token": ...}}} under "authorized".
  function storedToken() {
    try {
      var authorized = JSON.parse(window.localStorage.getItem("authorized") || "{}");
      var token = authorized.OAuth2 && authorized.OAuth2.token;
      return token && token.access_token ? token.access_token : null;
    } catch (e) {
      return null;
    }
  }

  // RFC 6749 section 2.3.1: id and secret are form-urlencoded before they go into the Basic credentials.
  function formEncoded(text) {
    return encodeURIComponent(text).replace(/%20/g, "+");
  }

  async function problemText(response) {
    try {
      var body = await response.json();
      return body.detail || body.error_description || body.title || response.statusText;
    } catch (e) {
      return response.statusText;
    }
  }

  async function token(clientId, secret) {
    if (!clientId) {
      var stored = storedToken();
      if (stored) {
        return stored;
      }
      throw new Error("enter a client id and secret (or Authorize on the REST API page first)");
    }
    var basic = window.btoa(formEncoded(clientId) + ":" + formEncoded(secret));
    var response = await fetch("/oauth/token", {
      method: "POST",
      headers: {
        "Authorization": "Basic " + basic,
        "Content-Type": "application/x-www-form-urlencoded",
      },
      body: "grant_type=client_credentials&scope=read",
    });
    if (!response.ok) {
      throw new Error("token: " + (await problemText(response)));
    }
    return (await response.json()).access_token;
  }

  async function show(event) {
    event.preventDefault();
    status.textContent = "Loading…";
    var data = new FormData(form);
    var query = new URLSearchParams();
    ["product", "capability_area", "nation", "from", "to"].forEach(function (name) {
      var value = String(data.get(name) || "").trim();
      if (value) {
        query.set(name, value);
      }
    });
    try {
      var bearer = await token(String(data.get("client_id") || "").trim(), String(data.get("client_secret") || ""));
      var response = await fetch("/v1/capacity/timeline.svg?" + query.toString(), {
        headers: { "Authorization": "Bearer " + bearer, "Accept": "image/svg+xml" },
      });
      if (!response.ok) {
        throw new Error(response.status + ": " + (await problemText(response)));
      }
      var svg = await response.blob();
      if (shown) {
        URL.revokeObjectURL(shown);
      }
      shown = URL.createObjectURL(new Blob([svg], { type: "image/svg+xml" }));
      chart.src = shown;
      figure.hidden = false;
      status.textContent = "";
    } catch (error) {
      figure.hidden = true;
      status.textContent = String(error.message || error);
    }
  }

  if (storedToken()) {
    document.getElementById("stored-token").hidden = false;
  }
  form.addEventListener("submit", show);
})();
