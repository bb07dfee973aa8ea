"""The ICEP gateway: the one public entry. It issues OAuth2 client-credentials tokens, publishes its JWKS,
checks each caller's token and forwards `/v1/...` requests to the service that owns the path."""
