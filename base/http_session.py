"""A `requests.Session` made cheaper where that changes nothing on the wire.

A first sync costs about four requests per scene (an edit and two uploads to Plex, an image
download from Stash), and the plugin's one core is what bounds a bulk sync: requests'
own bookkeeping around each request was a large share of it. Three pieces of that work
have the same answer every time for the two servers we talk to, so `settle` keeps the
answer instead of working it out again, and a fourth is skipped where it changes nothing:

* the environment (proxy and CA-bundle variables): requests walks all of `os.environ`
  twice per request, though it does not change while the plugin runs;
* a plain request's preparation (no cookies, auth, params, files or hooks, as every
  request to Plex and every image download from Stash is): it starts from a copy of one
  prepared by requests itself for the same method, server and headers, and a query already
  in the form it goes out in (`sent_as_is`) skips requests' re-encoding, which walks it
  character by character in Python;
* the connection pool for a server: requests asks urllib3's pool manager again for every
  request, parsing the URL and building the pool key each time;
* urllib3's re-encoding of the request target (`_encode_targets_as_is`): a target with any
  escape in it is walked byte by byte in Python, though one already in the form urllib3
  would give it comes out unchanged. A Plex edit's query holds every changed field escaped,
  so this was a quarter of the edit's own CPU (0.24 ms of 0.93 per edit, py-spy).

The first three are installed on the session or adapter object itself, so they also work
on a session made by a library (stashapi's); the fourth on urllib3's module, once per
process. Stdlib only at module level, like the rest of `base/`: requests is imported where
a template is prepared.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

#: What a path may hold as it is: unreserved characters, the others urllib3 leaves in a path,
#: and escapes in upper case. A query may hold "?" as well.
_PATH_CHAR = r"[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-F]{2}"
_QUERY_AS_IS = re.compile(rf"(?:{_PATH_CHAR}|\?)*")
#: A request target urllib3's `_encode_target` returns unchanged.
_TARGET_AS_IS = re.compile(rf"/(?:{_PATH_CHAR})*(?:\?{_QUERY_AS_IS.pattern})?")
#: The escape of an unreserved character, which requests turns back into the character.
_UNRESERVED_ESCAPE = re.compile(r"%(?:3[0-9]|[46][1-9A-F]|[57][0-9A]|2[DE]|5F|7E)")


def sent_as_is(query: str) -> bool:
    """requests and urllib3 would send this query unchanged: nothing left to escape, every
    escape in upper case, none of an unreserved character."""
    return _QUERY_AS_IS.fullmatch(query) is not None and _UNRESERVED_ESCAPE.search(query) is None


def settle(session: Any) -> None:
    """Install the three shortcuts on `session` and the adapters it has mounted now."""
    _settle_environment(session)
    _prepare_from_templates(session)
    for adapter in session.adapters.values():
        _keep_pools(adapter)
    _encode_targets_as_is()


def _encode_targets_as_is() -> None:
    """urllib3's pools re-encode every target (`connectionpool._encode_target`): one already
    in its encoded form is handed back as it is. Its own shortcut covers only a target with
    no escape at all; with every "%" opening an upper-case escape and every other character
    one it keeps, its byte walk copies each byte, so the answer is the same. Installed once
    per process, on urllib3's module (its pools call the name from there); a urllib3
    without that function is left alone."""
    import urllib3.connectionpool as pools

    encode = getattr(pools, "_encode_target", None)
    if encode is None or getattr(encode, "as_is", False):
        return

    def encode_target(target: str) -> str:
        return target if _TARGET_AS_IS.fullmatch(target) else encode(target)

    encode_target.as_is = True  # type: ignore[attr-defined]
    pools._encode_target = encode_target


def _per_server(url: str, proxies: Any, *rest: Any) -> tuple[Any, ...]:
    """What keeps an answer: the scheme and host, the proxies, and the call's other arguments
    (a client certificate given as a list made hashable)."""
    scheme, netloc = urlsplit(url)[:2]
    return (scheme, netloc, tuple(sorted((proxies or {}).items())),
            *(tuple(value) if isinstance(value, list) else value for value in rest))


def _settle_environment(session: Any) -> None:
    """What requests derives from the environment depends only on the scheme and host (and
    the call's own arguments), so each answer is kept and handed out as a copy."""
    merge = session.merge_environment_settings
    kept: dict[tuple[Any, ...], dict[str, Any]] = {}

    def merged(url: str, proxies: Any, stream: Any, verify: Any, cert: Any) -> dict[str, Any]:
        key = _per_server(url, proxies, stream, verify, cert)
        found = kept.get(key)
        if found is None:
            found = kept[key] = merge(url, proxies, stream, verify, cert)
        return {name: dict(value) if isinstance(value, dict) else value for name, value in found.items()}

    session.merge_environment_settings = merged


def _prepare_from_templates(session: Any) -> None:
    """A plain request prepared from a template (see the module's docstring); anything else,
    or a session holding a cookie (a server that sets one changes every request), goes the
    full way."""
    import requests

    prepare = session.prepare_request
    templates: dict[tuple[Any, ...], requests.PreparedRequest] = {}

    def plain(request: requests.Request, base: str) -> requests.PreparedRequest | None:
        if (session.cookies or session.auth or session.params or any(session.hooks.values()) or request.cookies
                or request.auth or request.files or request.json is not None or any(request.hooks.values())):
            return None
        method = str(request.method).upper()
        scheme, netloc = urlsplit(base)[:2]
        key = (method, scheme, netloc, tuple((request.headers or {}).items()), tuple(session.headers.items()))
        template = templates.get(key)
        if template is None:
            template = templates[key] = prepare(requests.Request(method, f"{scheme}://{netloc}/",
                                                                 headers=request.headers))
        prepared = template.copy()
        prepared.prepare_url(base, None)
        prepared.prepare_body(request.data, None)
        return prepared

    def prepared(request: requests.Request) -> requests.PreparedRequest:
        url = request.url
        if not isinstance(url, str) or request.params:
            return prepare(request)
        base, mark, query = url.partition("?")
        if mark and not sent_as_is(query):
            return prepare(request)
        done = plain(request, base)
        if done is None:
            request.url = base
            try:
                done = prepare(request)
            finally:
                request.url = url
        if mark:
            done.url = f"{done.url}?{query}"
        return done

    session.prepare_request = prepared


def _keep_pools(adapter: Any) -> None:
    """The adapter's pool lookup, kept per (server, TLS choice, proxies). A pool the pool
    manager has since closed (evicted, or the session closed) is looked up again."""
    lookup = getattr(adapter, "get_connection_with_tls_context", None)
    if lookup is None:
        return
    pools: dict[tuple[Any, ...], Any] = {}

    def pool_for(request: Any, verify: Any, proxies: Any = None, cert: Any = None) -> Any:
        key = _per_server(request.url, proxies, verify, cert)
        pool = pools.get(key)
        if pool is None or getattr(pool, "pool", None) is None:
            pool = pools[key] = lookup(request, verify, proxies=proxies, cert=cert)
        return pool

    adapter.get_connection_with_tls_context = pool_for
