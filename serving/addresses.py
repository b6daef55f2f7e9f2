"""The server's listen addresses: gRPC's host:port form and the bind check.

TensorFlow-free on purpose: `mlops serve` and the `--workers` supervisor check both ports here
before anything imports TensorFlow (several seconds and hundreds of MB), so a port another
program holds, or an address no interface has, fails in one line at once. The server checks
again before loading (it may be started without the CLI) and binds for real after loading.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from serving.config import ServerOptions


def grpc_address(host: str, port: int) -> str:
    """gRPC's host:port, with an IPv6 literal in brackets ('::1' -> '[::1]:8500')."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


MAX_PORT = 65535


def host_problem(host: str) -> str | None:
    """Why `host` is no bind address for both of the server's libraries, or None. The resolver
    forgives what gRPC does not (an empty host, a BOM or other invisible character, which IDNA
    drops, brackets nested or around a name), and gRPC would refuse it only after loading."""
    if not host:
        return "empty (0.0.0.0 is every interface)"
    if not host.isascii() or not host.isprintable() or any(c.isspace() for c in host):
        return "not a host name or IP address (invisible or non-ASCII characters)"
    inner = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if "[" in inner or "]" in inner or (inner != host and ":" not in inner):
        return "brackets go around an IPv6 literal only, once"
    return None


def check_bindable(host: str, port: int, what: str, reuse_port: bool = False) -> None:
    """Bind (and release) host:port the way the server will, or raise one clear OSError.
    `reuse_port`: a worker of `--workers N`, whose siblings may be listening already."""
    if not 0 <= port <= MAX_PORT:  # the OS would take it modulo 65536: another port
        raise OSError(f"the {what} port {port} is not a TCP port (0-{MAX_PORT})")
    problem = host_problem(host)
    if problem:
        raise OSError(f"cannot bind the {what} address {host!r}: {problem}")
    if not port:
        return
    plain = host.strip("[]")
    try:
        infos = socket.getaddrinfo(plain or None, port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            probe.bind(address)
    except OSError as e:
        reason = e.strerror or str(e)
        raise OSError(f"cannot bind the {what} address {host}:{port}: {reason}") from None


def check_ports(options: ServerOptions) -> None:
    """Both of the server's ports (REST only when on), bound as `options` will bind them."""
    check_bindable(options.grpc_host, options.port, "gRPC", options.reuse_port)
    if options.rest_api_port:
        check_bindable(options.rest_api_host, options.rest_api_port, "REST", options.reuse_port)
