"""The platform's published API documents, generated from the code: `icep docs` writes them.

- `openapi.json`: one OpenAPI 3.1 document of everything a partner reaches through the gateway: the
  gateway's own endpoints and the four services' `/v1` APIs (each completed by `icep.platform.openapi`),
  with the webhooks a subscriber receives in its `webhooks` section.
- `asyncapi.html`: the AsyncAPI document as a page to read (no script), served at `/docs/asyncapi`.
- `asyncapi.json`: an AsyncAPI 3.0 document of the Kafka topics, generated from `icep.contracts`: who
  sends and who receives each event type, its payload schema, its CloudEvents headers and its key.

Both are built from the apps' `openapi()` and the contract models, without starting anything (no broker,
no database). The gateway serves the checked-in files (`icep.gateway.docs`), and a test fails when they
drift from the code. The platform imports no service statically: services are found by import string.

The package's modules: `sources` (the apps' documents and the contracts), `openapi_webhooks` (the
`webhooks` section), `openapi_merge` (the OpenAPI document), `asyncapi` (the AsyncAPI document),
`asyncapi_html` (its page) and `files` (writing and checking the files).
"""

from icep.platform.apidocs.asyncapi import (
    ASYNCAPI_DESCRIPTION,
    ASYNCAPI_VERSION,
    CLOUDEVENT_HEADERS,
    DEAD_LETTER_HEADERS,
    KAFKA_BINDING_VERSION,
    KAFKA_HOST,
    asyncapi_document,
)
from icep.platform.apidocs.asyncapi_html import render_asyncapi_html
from icep.platform.apidocs.files import (
    ASYNCAPI_FILE,
    ASYNCAPI_HTML_FILE,
    DEFAULT_DIR,
    OPENAPI_FILE,
    differences,
    documents,
    drift,
    render,
    write,
)
from icep.platform.apidocs.openapi_merge import (
    GATEWAY_NOTES,
    OPENAPI_VERSION,
    merge_openapi,
    openapi_document,
)
from icep.platform.apidocs.openapi_webhooks import ENVELOPE_SCHEMA, EVENTS_TAG, PING_DATA_SCHEMA, webhooks
from icep.platform.apidocs.sources import (
    Consumer,
    Json,
    MergeError,
    consumers,
    contracts,
    producer_of,
    service_documents,
    topic_of,
)

__all__ = [
    "ASYNCAPI_DESCRIPTION",
    "ASYNCAPI_FILE",
    "ASYNCAPI_HTML_FILE",
    "ASYNCAPI_VERSION",
    "CLOUDEVENT_HEADERS",
    "DEAD_LETTER_HEADERS",
    "DEFAULT_DIR",
    "ENVELOPE_SCHEMA",
    "EVENTS_TAG",
    "GATEWAY_NOTES",
    "KAFKA_BINDING_VERSION",
    "KAFKA_HOST",
    "OPENAPI_FILE",
    "OPENAPI_VERSION",
    "PING_DATA_SCHEMA",
    "Consumer",
    "Json",
    "MergeError",
    "asyncapi_document",
    "consumers",
    "contracts",
    "differences",
    "documents",
    "drift",
    "merge_openapi",
    "openapi_document",
    "producer_of",
    "render",
    "render_asyncapi_html",
    "service_documents",
    "topic_of",
    "webhooks",
    "write",
]
