"""Wire shapes of the gateway's own endpoints (everything under /v1 belongs to the services)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class TokenResponse(BaseModel):
    """RFC 6749 section 5.1 access token response."""

    access_token: str = Field(description="A signed JWT (ES256); send it as `Authorization: Bearer ...`.")
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int = Field(description="Seconds until the token expires.", examples=[300])
    scope: str = Field(description="The granted scopes, space-separated.", examples=["read write"])


class OAuthError(BaseModel):
    """RFC 6749 section 5.2 error response (the token endpoint's errors use this, not problem JSON)."""

    error: Literal[
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
    ]
    error_description: str | None = None


class JsonWebKeySet(BaseModel):
    """RFC 7517 key set: the public keys that verify the gateway's tokens."""

    keys: list[dict[str, Any]]
