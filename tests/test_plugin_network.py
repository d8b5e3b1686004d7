"""The one classifier of network failures, fed the exception chains requests and urllib3
build (no socket is opened), and the words it says them in."""

from __future__ import annotations

import socket
import ssl

import pytest
import requests
import urllib3.exceptions as u3

from base.network import Cause, Fixes, NetFailure, address, classify, explain, from_status

URL = "https://127.0.0.1:32400/"


def wrapped(reason: BaseException, kind: type[requests.RequestException] = requests.exceptions.ConnectionError,
            cause: BaseException | None = None) -> requests.RequestException:
    """What requests raises: its error around urllib3's MaxRetryError around the reason."""
    if cause is not None:
        reason.__cause__ = cause
    return kind(u3.MaxRetryError(None, URL, reason))  # type: ignore[arg-type]


def cert_error(message: str) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {message}")
    error.verify_message = message  # type: ignore[attr-defined]
    return error


def tls_error(reason: str) -> ssl.SSLError:
    error = ssl.SSLError(1, f"[SSL: {reason}] {reason.lower().replace('_', ' ')} (_ssl.c:1006)")
    error.reason = reason  # type: ignore[attr-defined]
    return error


CASES = [
    ("refused", wrapped(u3.NewConnectionError(None, "Failed to establish a new connection: [Errno 111]"),  # type: ignore[arg-type]
                        cause=ConnectionRefusedError(111, "Connection refused")), Cause.REFUSED),
    ("name", wrapped(u3.NameResolutionError("plex.lan", None, socket.gaierror(-2, "Name or service not known"))),  # type: ignore[arg-type]
     Cause.NAME_NOT_RESOLVED),
    ("connect timeout", wrapped(u3.ConnectTimeoutError(None, "timed out. (connect timeout=5)"),
                                requests.exceptions.ConnectTimeout), Cause.CONNECT_TIMEOUT),
    ("read timeout", requests.exceptions.ReadTimeout(u3.ReadTimeoutError(None, URL, "Read timed out.")),  # type: ignore[arg-type]
     Cause.READ_TIMEOUT),
    ("certificate", wrapped(u3.SSLError(cert_error("Hostname mismatch, certificate is not valid for '127.0.0.1'.")),
                            requests.exceptions.SSLError), Cause.CERTIFICATE),
    ("pinned certificate differs", wrapped(u3.SSLError('Fingerprints did not match. Expected "ab", got "cd"'),
                                           requests.exceptions.SSLError), Cause.CERTIFICATE),
    ("https to an http port", wrapped(u3.SSLError(tls_error("WRONG_VERSION_NUMBER")), requests.exceptions.SSLError),
     Cause.HTTPS_TO_HTTP),
    ("tls alert read as a status line", requests.exceptions.ConnectionError(
        u3.ProtocolError("Connection aborted.", __import__("http.client").client.BadStatusLine("\x15\x03\x01\x00\x02\x02P"))),
     Cause.HTTP_TO_HTTPS),
    ("reset", requests.exceptions.ConnectionError(u3.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))),
     Cause.DROPPED),
    ("remote closed", requests.exceptions.ConnectionError(u3.ProtocolError(
        "Connection aborted.", __import__("http.client").client.RemoteDisconnected("closed"))), Cause.DROPPED),
    ("environment proxy", wrapped(u3.ProxyError("Unable to connect to proxy", OSError("refused")),
                                  requests.exceptions.ProxyError), Cause.PROXY_UNREACHABLE),
]


@pytest.mark.parametrize(("name", "exc", "cause"), CASES, ids=[c[0] for c in CASES])
def test_each_failure_has_one_cause(name: str, exc: BaseException, cause: Cause) -> None:
    found = classify(exc)
    assert found is not None and found.cause is cause


def test_the_certificate_says_why_it_was_refused() -> None:
    found = classify(CASES[4][1])
    assert found == NetFailure(Cause.CERTIFICATE, "Hostname mismatch, certificate is not valid for '127.0.0.1'")


def test_what_is_not_a_network_failure_is_left_alone() -> None:
    assert classify(ValueError("bad xml")) is None
    assert classify(KeyError("title")) is None


@pytest.mark.parametrize(("cause", "setting", "transient"), [
    (Cause.REFUSED, False, False), (Cause.CONNECT_TIMEOUT, False, False), (Cause.PROXY_GATEWAY, False, False),
    (Cause.READ_TIMEOUT, False, True), (Cause.DROPPED, False, True),
    (Cause.CERTIFICATE, True, False), (Cause.HTTPS_TO_HTTP, True, False), (Cause.HTTP_TO_HTTPS, True, False),
    (Cause.NAME_NOT_RESOLVED, True, False),
])
def test_what_passes_by_itself_and_what_needs_a_setting(cause: Cause, setting: bool, transient: bool) -> None:
    failure = NetFailure(cause)
    assert (failure.needs_setting, failure.transient) == (setting, transient)


def test_a_proxys_502_and_504_and_nginxs_plain_http_page_are_network_failures() -> None:
    assert from_status(502) == NetFailure(Cause.PROXY_GATEWAY, "502 Bad Gateway")
    assert from_status(504) == NetFailure(Cause.PROXY_GATEWAY, "504 Gateway Timeout")
    assert from_status(400, "<title>400 The plain HTTP request was sent to HTTPS port</title>") == NetFailure(
        Cause.HTTP_TO_HTTPS)
    assert from_status(400, "bad rating") is None
    assert from_status(503) is None and from_status(500) is None


def test_the_address_shown_never_has_a_token_or_password() -> None:
    assert address("https://user:secret@plex.lan:32400/plex/?X-Plex-Token=abc") == "https://plex.lan:32400/plex"
    assert address("http://[::1]:32400") == "http://[::1]:32400"


FIX = Fixes(url="'Plex URL'", tls="Trust it with 'Plex CA file'", timeouts="5s, 'Connect timeout'")


@pytest.mark.parametrize(("failure", "words"), [
    (NetFailure(Cause.REFUSED), "refused the connection: nothing listens on that port"),
    (NetFailure(Cause.CONNECT_TIMEOUT), "did not accept a connection in time (5s, 'Connect timeout')"),
    (NetFailure(Cause.NAME_NOT_RESOLVED, "plex.lan"), "the host name 'plex.lan' does not resolve"),
    (NetFailure(Cause.CERTIFICATE, "self-signed certificate"),
     "presented a certificate that does not verify (self-signed certificate). Trust it with 'Plex CA file'"),
    (NetFailure(Cause.HTTPS_TO_HTTP), "speaks plain HTTP on that port, not HTTPS: use http:// in 'Plex URL'"),
    (NetFailure(Cause.HTTP_TO_HTTPS), "speaks HTTPS on that port, not plain HTTP: use https:// in 'Plex URL'"),
    (NetFailure(Cause.PROXY_GATEWAY, "502 Bad Gateway"), "is behind a proxy that answered 502 Bad Gateway"),
])
def test_each_cause_is_said_with_the_address_and_the_fix(failure: NetFailure, words: str) -> None:
    text = explain(failure, "Plex", "https://plex.lan:32400/?X-Plex-Token=abc", FIX)
    assert text.startswith("Plex at https://plex.lan:32400 ") and words in text
    assert "abc" not in text
