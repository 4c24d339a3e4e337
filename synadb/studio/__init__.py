"""Studio: a local web UI over one synadb file.

``synadb studio FILE`` (or :func:`launch_studio`) serves pages for the
file's keys, experiment runs, models and vectors on http://127.0.0.1:8501.
Every script, style and chart library comes from this package, so Studio
works offline.  It opens the file read-only and follows what a training
process appends (curves grow while you watch); ``--allow-writes`` enables
deleting runs and changing model stages.

Needs the ``studio`` extra (``pip install 'synadb[studio]'``: Starlette and
uvicorn).  Importing :mod:`synadb` never imports this package.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..errors import MissingDependency

__all__ = ["launch_studio", "create_app", "add_parser", "main", "DEFAULT_PORT"]

DEFAULT_PORT = 8501
DEFAULT_HOST = "127.0.0.1"
_HINT = "Studio needs Starlette and uvicorn: pip install 'synadb[studio]'"


def create_app(path: str | os.PathLike[str], *, allow_writes: bool = False,
               allowed_hosts: list[str] | None = None) -> Any:
    """The Studio ASGI app (a Starlette app) over ``path``; see
    :func:`synadb.studio.server.create_app`."""
    try:
        from .server import create_app as _create
    except ImportError as e:
        raise MissingDependency(f"{_HINT} ({e})") from e
    return _create(path, allow_writes=allow_writes, allowed_hosts=allowed_hosts)


def _allowed_hosts(host: str, port: int) -> list[str] | None:
    # Bound to every interface on purpose: any Host header is fine then.
    if host in ("0.0.0.0", "::", ""):
        return ["*"]
    from .server import LOOPBACK_HOSTS

    return sorted(set(LOOPBACK_HOSTS) | {host, f"[{host}]"})


def launch_studio(path: str | os.PathLike[str], port: int = DEFAULT_PORT,
                  host: str = DEFAULT_HOST, allow_writes: bool = False,
                  open_browser: bool = False, *, print_json: bool = False) -> None:
    """Serve Studio for the database at ``path`` until interrupted (Ctrl-C).

    Args:
        path: an existing synadb file (opened read-only).
        port: TCP port (0 picks a free one).
        host: interface to bind; the default serves this machine only.
        allow_writes: let the page delete runs and change model stages.
        open_browser: open the page in the default web browser.
        print_json: print the address (with the port actually bound) as one
            JSON object on stdout once the socket listens.

    Raises:
        MissingDependency: Starlette or uvicorn is not installed.
        DatabaseNotFound: ``path`` does not exist.
        OSError: the address cannot be bound (say, the port is in use).

    >>> launch_studio("experiments.db")   # doctest: +SKIP
    """
    try:
        import uvicorn
    except ImportError as e:
        raise MissingDependency(f"{_HINT} ({e})") from e
    app = create_app(path, allow_writes=allow_writes,
                     allowed_hosts=_allowed_hosts(host, port))
    config = uvicorn.Config(app, host=host, port=port, log_level="warning",
                            access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    # Bind here, not in uvicorn: a port in use is then an OSError (exit 1,
    # one line) before anything claims to serve, and port 0 is reported as
    # the port the system picked, not as 0.
    import socket

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"cannot serve on {host}:{port}: {e.strerror}") from None
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    if print_json:
        import json

        print(json.dumps({"url": f"http://{shown}:{port}/", "path": os.fspath(path),
                          "allow_writes": allow_writes}), flush=True)
    if open_browser and port:
        import threading
        import webbrowser

        threading.Timer(0.5, webbrowser.open, (f"http://{shown}:{port}/",)).start()
    mode = "read-write" if allow_writes else "read-only"
    print(f"synadb studio: {os.fspath(path)} ({mode}) on http://{shown}:{port}/ "
          "(Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is not in 0..65535")
    return value


def _configure(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("file", metavar="FILE", help="the database file")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT,
                   help=f"TCP port (default {DEFAULT_PORT}; 0 picks a free one)")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"interface to bind (default {DEFAULT_HOST}: this machine only)")
    p.add_argument("--allow-writes", action="store_true",
                   help="let the page delete runs and change model stages "
                        "(default: read-only)")
    p.add_argument("--open", dest="open_browser", action="store_true",
                   help="open the page in a web browser")
    p.add_argument("--json", action="store_true",
                   help="print the address as one JSON object on stdout before serving")
    return p


def _run(args: argparse.Namespace) -> int:
    path = args.file
    if not os.path.exists(path):
        print(f"synadb studio: error: no such file: {path}", file=sys.stderr)
        return 1
    try:
        launch_studio(path, port=args.port, host=args.host, allow_writes=args.allow_writes,
                      open_browser=args.open_browser,
                      print_json=getattr(args, "json", False))
    except KeyboardInterrupt:
        return 130
    except OSError as e:
        print(f"synadb studio: error: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``studio`` on an argparse ``add_subparsers()`` object.

    The handler is set as ``func`` (and the subparser as ``parser``), the
    convention of :mod:`synadb.cli`: ``args.func(args)`` returns the exit code.
    """
    help = "serve a local web UI over the file (read-only unless --allow-writes)"
    p = subparsers.add_parser("studio", help=help, description=help[:1].upper() + help[1:]
                              + ".")
    _configure(p)
    p.set_defaults(func=_run, parser=p)
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m synadb.studio FILE [--port N] [--host H] [--allow-writes]``."""
    parser = _configure(argparse.ArgumentParser(
        prog="synadb studio", description="Serve a local web UI over a synadb file."))
    args = parser.parse_args(argv)
    return _run(args)
