"""Certificates made at test time, and serving HTTPS the way Plex with secure connections does.

Real Plex with "Secure connections: Required" presents a certificate for
`*.<server hash>.plex.direct` signed by a public CA, so `https://192.168.1.10:32400` fails
hostname verification while `https://192-168-1-10.<hash>.plex.direct:32400` works. Tests
cannot reach the public CA or a plex.direct name, so they make their own CA here, issue a
certificate with those names, and connect to 127.0.0.1 while trusting that CA: the names are
carried by the certificate only. A self-signed certificate stands for Stash's own
`stash.crt`, which users generate for Stash's HTTPS.

A plain-HTTP request to such a port is closed without an answer (what clients report from
Plex set to "Required"); `TlsServer.plain_http_answer` can give nginx's 400 page instead.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PLEX_HASH = "0123456789abcdef0123456789abcdef"
_NGINX_PAGE = (b"<html>\r\n<head><title>400 The plain HTTP request was sent to HTTPS port</title></head>\r\n<body>\r\n"
               b"<center><h1>400 Bad Request</h1></center>\r\n<center>The plain HTTP request was sent to HTTPS port"
               b"</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
#: nginx's answer to plain HTTP on its TLS port, for a Plex behind a reverse proxy.
NGINX_PLAIN_HTTP = (b"HTTP/1.1 400 Bad Request\r\nServer: nginx\r\nContent-Type: text/html\r\nConnection: close\r\n"
                    b"Content-Length: " + str(len(_NGINX_PAGE)).encode() + b"\r\n\r\n" + _NGINX_PAGE)


@dataclass(frozen=True)
class CertFiles:
    cert: Path  # PEM, the server's certificate (its chain up to, not including, the root)
    key: Path
    ca: Path  # PEM of the root a client must trust (the certificate itself when self-signed)
    names: tuple[str, ...]


def plex_direct_name(ip: str, server_hash: str = PLEX_HASH) -> str:
    return f"{ip.replace('.', '-')}.{server_hash}.plex.direct"


def _key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, *objects: Any) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    out = b""
    for obj in objects:
        if isinstance(obj, ec.EllipticCurvePrivateKey):
            out += obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
        else:
            out += obj.public_bytes(serialization.Encoding.PEM)
    path.write_bytes(out)
    return path


def _san(names: tuple[str, ...]) -> Any:
    from cryptography import x509

    entries: list[Any] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _certificate(subject: str, public_key: Any, issuer: str, signer: Any, *, ca: bool,
                 names: tuple[str, ...] = ()) -> Any:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
               .public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if names:
        builder = builder.add_extension(_san(names), critical=False)
    return builder.sign(signer, hashes.SHA256())


def issue(folder: Path, names: tuple[str, ...], *, stem: str = "server", self_signed: bool = False) -> CertFiles:
    """A certificate for `names` (DNS names or IP addresses), signed by a fresh test CA, or
    signed by itself (then it is its own root, as a user's `openssl req -x509` makes it)."""
    folder.mkdir(parents=True, exist_ok=True)
    key = _key()
    if self_signed:
        cert = _certificate(names[0], key.public_key(), names[0], key, ca=True, names=names)
        path = _write(folder / f"{stem}.crt", cert)
        return CertFiles(path, _write(folder / f"{stem}.key", key), path, names)
    ca_key = _key()
    ca_cert = _certificate(f"{stem} test CA", ca_key.public_key(), f"{stem} test CA", ca_key, ca=True)
    cert = _certificate(names[0], key.public_key(), f"{stem} test CA", ca_key, ca=False, names=names)
    return CertFiles(_write(folder / f"{stem}.crt", cert), _write(folder / f"{stem}.key", key),
                     _write(folder / f"{stem}-ca.crt", ca_cert), names)


def plex_direct(folder: Path, server_hash: str = PLEX_HASH) -> CertFiles:
    """What Plex serves with secure connections: `*.<hash>.plex.direct`, from a CA."""
    return issue(folder, (f"*.{server_hash}.plex.direct",), stem="plex")


def server_context(files: CertFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(files.cert), str(files.key))
    return context


class TlsServer:
    """Mixed into a `socketserver` server: each accepted connection is wrapped in TLS in its
    own handler thread (a slow or plain-HTTP client then holds up nobody else)."""

    tls_context: ssl.SSLContext | None = None
    plain_http_answer: bytes | None = None  # None: close without an answer, as Plex does

    def wrap_connection(self, request: socket.socket) -> socket.socket | None:
        """The TLS socket, or None when the client spoke plain HTTP (answered and closed)."""
        if self.tls_context is None:
            return request
        try:
            first = request.recv(1, socket.MSG_PEEK)
        except OSError:
            return None
        if first != b"\x16":  # not a TLS handshake record
            with contextlib.suppress(OSError):
                if self.plain_http_answer:
                    request.recv(65536)
                    request.sendall(self.plain_http_answer)
                request.shutdown(socket.SHUT_RDWR)
            return None
        try:
            return self.tls_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return None  # the client refused our certificate: its error says why

    def finish_request(self, request: Any, client_address: Any) -> None:
        wrapped = self.wrap_connection(request)
        if wrapped is None:
            return
        if wrapped is request:
            super().finish_request(request, client_address)  # type: ignore[misc]
            return
        self.opened(wrapped)
        try:
            super().finish_request(wrapped, client_address)  # type: ignore[misc]
        finally:
            self.closed(wrapped)
            with contextlib.suppress(OSError):
                wrapped.close()

    def opened(self, connection: socket.socket) -> None:
        """A TLS connection is open (a server that resets its connections tracks it)."""

    def closed(self, connection: socket.socket) -> None:
        """The TLS connection is done."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: a client that hung up or refused our certificate is not the server's error."""
