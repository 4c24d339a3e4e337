"""Studio: a local web UI over one synadb file.

``synadb studio FILE`` (or :func:`serve`) serves pages for the file's
runs, metrics, models, vectors and keys on http://127.0.0.1:8501;
:func:`launch_studio` does the same from a background thread and returns a
handle at once (shown inline in Jupyter).
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

__all__ = ["launch_studio", "serve", "StudioServer", "create_app", "add_parser", "main",
           "DEFAULT_PORT"]

DEFAULT_PORT = 8501
DEFAULT_HOST = "127.0.0.1"
_HINT = "Studio needs Starlette and uvicorn: pip install 'synadb[studio]'"


def create_app(path: str | os.PathLike[str], *, allow_writes: bool = False,
               allowed_hosts: list[str] | None = None,
               frame_ancestors: list[str] | None = None) -> Any:
    """The Studio ASGI app (a Starlette app) over ``path``; see
    :func:`synadb.studio.server.create_app`."""
    try:
        from .server import create_app as _create
    except ImportError as e:
        raise MissingDependency(f"{_HINT} ({e})") from e
    return _create(path, allow_writes=allow_writes, allowed_hosts=allowed_hosts,
                   frame_ancestors=frame_ancestors)


def _allowed_hosts(host: str, port: int) -> list[str] | None:
    # Bound to every interface on purpose: any Host header is fine then.
    if host in ("0.0.0.0", "::", ""):
        return ["*"]
    from .server import LOOPBACK_HOSTS

    return sorted(set(LOOPBACK_HOSTS) | {host, f"[{host}]"})


def _bind(host: str, port: int) -> Any:
    """A listening socket on ``host:port`` (port 0 picks a free one).

    Bound here, not in uvicorn: a port in use is then an OSError before
    anything claims to serve, and port 0 is reported as the port the
    system picked, not as 0.
    """
    import socket

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"cannot serve on {host}:{port}: {e.strerror}") from None
    return sock


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def _uvicorn() -> Any:
    try:
        import uvicorn
    except ImportError as e:
        raise MissingDependency(f"{_HINT} ({e})") from e
    return uvicorn


def serve(path: str | os.PathLike[str], port: int = DEFAULT_PORT,
          host: str = DEFAULT_HOST, allow_writes: bool = False,
          open_browser: bool = False, *, print_json: bool = False) -> None:
    """Serve Studio for the database at ``path`` until interrupted (Ctrl-C).

    This blocks (``synadb studio FILE`` runs it); from a notebook or a
    script that goes on working, use :func:`launch_studio`, which serves
    from a background thread and returns at once.

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

    >>> serve("experiments.db")   # doctest: +SKIP
    """
    uvicorn = _uvicorn()
    app = create_app(path, allow_writes=allow_writes,
                     allowed_hosts=_allowed_hosts(host, port))
    config = uvicorn.Config(app, host=host, port=port, log_level="warning",
                            access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    sock = _bind(host, port)
    url = _url(host, sock.getsockname()[1])
    if print_json:
        import json

        print(json.dumps({"url": url, "path": os.fspath(path),
                          "allow_writes": allow_writes}), flush=True)
    if open_browser:
        import threading
        import webbrowser

        threading.Timer(0.5, webbrowser.open, (url,)).start()
    mode = "read-write" if allow_writes else "read-only"
    print(f"synadb studio: {os.fspath(path)} ({mode}) on {url} (Ctrl-C stops)",
          file=sys.stderr, flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


class StudioServer:
    """Studio serving from a background thread: what :func:`launch_studio`
    returns.

    ``url`` and ``port`` say where it listens; ``stop()`` (or leaving a
    ``with`` block) shuts it down and closes the file.  In Jupyter the
    handle shows Studio inline (an iframe of ``url``).
    """

    def __init__(self, path: str | os.PathLike[str], port: int, host: str,
                 allow_writes: bool) -> None:
        import threading

        uvicorn = _uvicorn()
        self.path = os.fspath(path)
        self.host = host
        self.allow_writes = allow_writes
        # Framed by a notebook page on this machine (Jupyter, VS Code):
        # only loopback origins may embed it.
        app = create_app(path, allow_writes=allow_writes,
                         allowed_hosts=_allowed_hosts(host, port),
                         frame_ancestors=list(EMBED_ORIGINS))
        # stop() waits at most this long for a request still being answered.
        config = uvicorn.Config(app, host=host, port=port, log_level="warning",
                                access_log=False, lifespan="on", timeout_graceful_shutdown=5)
        self._server = uvicorn.Server(config)
        try:
            self._sock = _bind(host, port)
        except BaseException:
            app.state.studio.close()
            raise
        self.port: int = self._sock.getsockname()[1]
        self.url: str = _url(host, self.port)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"synadb-studio-{self.port}",
                                         daemon=True)
        self._thread.start()
        # The socket already listens (requests wait in its backlog), so the
        # URL works now; wait only to report a failed start-up here.
        import time

        deadline = time.monotonic() + 30
        while not self._server.started and self._thread.is_alive() \
                and time.monotonic() < deadline:
            self._thread.join(0.01)
        if self._error is not None or not self._thread.is_alive():
            self.stop()
            try:  # its lifespan never ran, so nothing closed the file
                app.state.studio.close()
            except Exception:  # noqa: BLE001 - the start-up error is the one to report
                pass
            raise RuntimeError(f"Studio did not start: {self._error!r}")

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as e:  # reported by __init__ / stop()
            self._error = e

    @property
    def running(self) -> bool:
        """True until :meth:`stop`."""
        return self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and close the file (idempotent)."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._sock.close()

    close = stop

    def __enter__(self) -> StudioServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "serving" if self.running else "stopped"
        mode = "read-write" if self.allow_writes else "read-only"
        return f"<synadb Studio {self.path!r} ({mode}) {state} at {self.url}>"

    def _repr_html_(self) -> str:
        import html

        url = html.escape(self.url, quote=True)
        if not self.running:
            return f"<p>synadb Studio at {url} is stopped.</p>"
        return (f'<iframe src="{url}" width="100%" height="720" '
                f'style="border:1px solid #dde1e8;border-radius:6px" '
                f'title="synadb studio"></iframe>'
                f'<p style="font-size:12px">synadb Studio: <a href="{url}" target="_blank" '
                f'rel="noopener">{url}</a> ({html.escape(self.path)})</p>')


# Pages that may show Studio in an iframe (launch_studio only; the CLI's
# server refuses every frame).
EMBED_ORIGINS = ("'self'", "http://localhost:*", "http://127.0.0.1:*",
                 "https://localhost:*", "https://127.0.0.1:*", "vscode-webview:")


def launch_studio(path: str | os.PathLike[str], port: int | None = None,
                  host: str = DEFAULT_HOST, allow_writes: bool = False,
                  open_browser: bool = False) -> StudioServer:
    """Serve Studio for the database at ``path`` from a background thread.

    Returns at once with a :class:`StudioServer` handle: ``.url``,
    ``.port``, ``.stop()``; it is a context manager, and in Jupyter it shows
    Studio inline.  The training loop (or the notebook) goes on while
    Studio follows what it appends.

    Args:
        path: an existing synadb file (opened read-only).
        port: TCP port; 0 picks a free one (see ``.port``).  Default:
            8501 (as ``synadb studio``), or a free one when 8501 is taken.
        host: interface to bind; the default serves this machine only.
        allow_writes: let the page delete runs and change model stages.
        open_browser: open the page in the default web browser.

    Raises:
        MissingDependency: Starlette or uvicorn is not installed.
        DatabaseNotFound: ``path`` does not exist.
        OSError: the address cannot be bound (say, the port is in use).

    >>> studio = launch_studio("experiments.db")   # doctest: +SKIP
    >>> studio.url                                 # doctest: +SKIP
    'http://127.0.0.1:41537/'
    >>> studio.stop()                              # doctest: +SKIP
    """
    if port is None:
        try:
            handle = StudioServer(path, DEFAULT_PORT, host, allow_writes)
        except OSError:  # 8501 taken (another Studio, say): any free port
            handle = StudioServer(path, 0, host, allow_writes)
    else:
        handle = StudioServer(path, port, host, allow_writes)
    if open_browser:
        import webbrowser

        webbrowser.open(handle.url)
    return handle


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
        serve(path, port=args.port, host=args.host, allow_writes=args.allow_writes,
              open_browser=args.open_browser, print_json=getattr(args, "json", False))
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
