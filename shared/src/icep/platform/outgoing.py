"""The platform's outgoing HTTP sessions (aiohttp): the gateway's proxy and the webhook dispatcher.

Both pass on what they are given and nothing else: no proxies or CA settings from the environment's proxy
variables, no cookie kept from one answer for the next request (a shared session serves many callers
and partners), answers read raw (never decompressed: the proxy relays them as sent, the dispatcher keeps
only their start), no overall timeout (the callers bound each exchange themselves) and each request sent
once.
"""

from __future__ import annotations

from collections.abc import Iterable

import aiohttp


def plain_session(
    connector: aiohttp.BaseConnector, *, skip_auto_headers: Iterable[str]
) -> aiohttp.ClientSession:
    """A session on `connector` that adds none of `skip_auto_headers` of its own. Made in the running loop
    (aiohttp binds a session to it)."""
    session = aiohttp.ClientSession(
        connector=connector,
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        timeout=aiohttp.ClientTimeout(total=None),
        skip_auto_headers=tuple(skip_auto_headers),
    )
    # aiohttp sends a GET, HEAD, PUT or DELETE a second time when the connection breaks before the answer
    # (meant for a pooled connection the server had closed). A request is sent once here: a service that
    # failed mid-request may have done the work. Idle connections are dropped before the other side closes
    # them, so the case the retry is for does not arise. There is no public switch; aiohttp's own test
    # client sets the same attribute.
    session._retry_connection = False
    return session
