"""The ``synadb`` command: look inside a database file from a shell.

::

    synadb info data.db
    synadb keys data.db "sensor/*" --limit 10
    synadb get data.db sensor/temp
    synadb history data.db sensor/temp --json
    synadb verify data.db
    synadb compact data.db --drop-history
    synadb export data.db out.parquet --pattern "sensor/*"
    synadb runs experiments.db --experiment mnist
    synadb models models.db
    synadb studio experiments.db --port 8501
    synadb mlflow-push experiments.db --to http://127.0.0.1:5000

Every command but ``compact`` opens the file read-only: it never changes the
file, never creates one, and never waits for a writer's lock.  Every command
takes ``--json`` for output that programs read; tables are drawn with
``rich`` when it is installed and stdout is a terminal.  Errors that synadb
raises on purpose become ``synadb: error: <message>`` on stderr and exit code
1; usage errors exit 2, as argparse does.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from typing import Any, Callable

from . import __version__
from .errors import KeyNotFound, SynaError

__all__ = ["main", "build_parser"]

PROG = "synadb"
# Output extension -> export format; the formats are db.export_<format>.
EXPORT_FORMATS = ("json", "jsonl", "csv", "parquet", "arrow")
EXPORT_EXTENSIONS = {
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
}


# ------------------------------------------------------------------ helpers
def _open(path: str, *, read_only: bool = True) -> Any:
    from .db import SynaDB

    # read_only: a missing file raises DatabaseNotFound instead of being
    # created, and the open never takes (or waits for) the writer's lock.
    return SynaDB(path, read_only=read_only)


def _non_negative(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return n


def _float32_list(vec: Any) -> list[float]:
    # str() of a numpy float32 is its shortest round-tripping form: 0.1, not
    # the 0.10000000149011612 that float(x) would give.
    return [float(str(x)) for x in vec]


def _jsonable(value: Any, b64: bool) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        return base64.b64encode(raw).decode("ascii") if b64 else raw.hex()
    if hasattr(value, "dtype") and getattr(value, "ndim", 0) == 1:
        return _float32_list(value)
    return value


def _plain(value: Any, b64: bool) -> str:
    """One value as one line of text (text values are printed as they are)."""
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return str(_jsonable(value, b64))
    if hasattr(value, "dtype"):
        return json.dumps(_float32_list(value))
    return str(value)


def _dump(value: Any) -> str:
    # NaN and infinities come out as NaN/Infinity, which Python's json and
    # JavaScript read back; strict JSON has no spelling for them.
    return json.dumps(value, ensure_ascii=False)


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """Rows as a table: rich's on a terminal (if installed), aligned text otherwise."""
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    if sys.stdout.isatty():
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            pass
        else:
            table = Table(title=title)
            for c in columns:
                table.add_column(c)
            for row in cells:
                table.add_row(*row)
            Console().print(table)
            return
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def _when(ts: float | None) -> str:
    if ts is None:
        return ""
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _num(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _missing(key: str, path: str) -> KeyNotFound:
    return KeyNotFound(f"no key {key!r} in {path!r}")


# ----------------------------------------------------------------- commands
def _cmd_info(args: argparse.Namespace) -> int:
    with _open(args.file) as db:
        # The file grows in preallocated steps, so its size overstates what
        # the records use; used_bytes (the end of the last record) does not.
        full = db.info()
        keep = ("path", "size_bytes", "used_bytes", "keys", "format_version",
                "read_version", "created_ms")
        info = {k: full[k] for k in keep}
    if args.json:
        print(_dump(info))
        return 0
    from datetime import datetime, timezone

    created = datetime.fromtimestamp(info["created_ms"] / 1000, tz=timezone.utc)
    print(f"path:           {info['path']}")
    print(f"size:           {info['size_bytes']} bytes ({info['used_bytes']} in use)")
    print(f"keys:           {info['keys']}")
    print(f"format version: {info['format_version']} "
          f"(readable by format {info['read_version']} and newer)")
    print(f"created:        {created.isoformat(timespec='seconds')}")
    return 0


def _cmd_keys(args: argparse.Namespace) -> int:
    with _open(args.file) as db:
        names = db.keys(args.pattern)
    if args.limit is not None:
        names = names[:args.limit]
    if args.json:
        print(_dump(names))
        return 0
    for name in names:
        print(name)
    return 0


def _cmd_get(args: argparse.Namespace) -> int:
    missing = object()
    with _open(args.file) as db:
        value = db.get(args.key, missing)
        if value is missing:
            raise _missing(args.key, db.path)
    if args.json:
        print(_dump(_jsonable(value, args.base64)))
    else:
        print(_plain(value, args.base64))
    return 0


def _cmd_history(args: argparse.Namespace) -> int:
    with _open(args.file) as db:
        if args.key not in db:
            raise _missing(args.key, db.path)
        values = db.get_history(args.key)
    if args.limit is not None:
        values = values[len(values) - args.limit:] if args.limit else []
    if args.json:
        print(_dump([_jsonable(v, args.base64) for v in values]))
    else:
        for v in values:
            print(_plain(v, args.base64))
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    with _open(args.file) as db:
        report = db.verify()
    if args.json:
        print(_dump({"path": report.path, "ok": report.ok, "records": report.records,
                     "damaged": [vars(d) if hasattr(d, "__dict__") else str(d)
                                 for d in report.damaged]}))
    else:
        print(report)
    return 0 if report.ok else 1


def _cmd_compact(args: argparse.Namespace) -> int:
    # Compaction writes, so it cannot open read-only.  A read-only open first
    # makes a missing or empty FILE an error instead of a new database.
    _open(args.file).close()
    before = os.path.getsize(args.file)
    with _open(args.file, read_only=False) as db:
        saved = db.compact(keep_history=not args.drop_history,
                           progress=not args.no_progress)
        path = db.path
    after = os.path.getsize(path)
    if args.json:
        print(_dump({"path": path, "saved_bytes": saved, "size_before": before,
                     "size_after": after}))
    else:
        print(f"compacted {path}: saved {saved} bytes ({before} -> {after} bytes)")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    fmt = args.format
    if args.out is None:
        if fmt is None:
            args.parser.error("give OUT or --format "
                              f"{{{','.join(EXPORT_FORMATS)}}}")
        args.out = os.path.splitext(args.file)[0] + "." + fmt
    if fmt is None:
        ext = os.path.splitext(args.out)[1].lower()
        fmt = EXPORT_EXTENSIONS.get(ext)
        if fmt is None:
            args.parser.error(f"cannot tell the format from {args.out!r}; "
                              f"use --format {{{','.join(EXPORT_FORMATS)}}}")
    with _open(args.file) as db:
        export: Callable[..., int] = getattr(db, f"export_{fmt}")
        n = export(args.out, key_pattern=args.pattern, key_prefix=args.prefix)
    if args.json:
        print(_dump({"out": args.out, "format": fmt, "exported": n}))
    else:
        print(f"exported {n} to {args.out} ({fmt})")
    return 0


def _cmd_runs(args: argparse.Namespace) -> int:
    from .tracking import ExperimentTracker, RunStatus

    with ExperimentTracker(args.file, read_only=True) as tracker:
        if args.experiment and args.experiment not in tracker.list_experiments():
            raise KeyNotFound(f"no experiment {args.experiment!r} in {tracker.path!r}; "
                              f"it has {tracker.list_experiments()}")
        # Sort first, then filter: --status with --sort keeps the sort order.
        # An unknown status (a typo) is an error, not an empty listing.
        runs = tracker.query(args.experiment, sort_by=args.sort or None,
                             ascending=not args.desc)
        if args.status:
            status = RunStatus.parse(args.status)
            runs = [r for r in runs if r.status == status]
        if args.limit is not None:
            runs = runs[:args.limit]
        data = [r.to_dict() for r in runs]
    if args.json:
        print(_dump(data))
        return 0
    metrics = sorted({m for d in data for m in d["metrics"]})
    columns = ["run", "name", "experiment", "status", "started"] + metrics
    rows = [[d["id"][:8], d["name"], d["experiment"], d["status"], _when(d["start_time"])]
            + [_num(d["metrics"].get(m, "")) for m in metrics] for d in data]
    _table(f"runs in {args.file}", columns, rows)
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from .registry import ModelRegistry

    with ModelRegistry(args.file, read_only=True) as registry:
        names = [args.name] if args.name else registry.list_models()
        data = []
        for name in names:
            versions = registry.list_versions(name)
            if not versions and args.name:
                raise KeyNotFound(f"no model {name!r} in {registry.path!r}")
            data += [v.to_dict() for v in versions]
    if args.json:
        print(_dump(data))
        return 0
    columns = ["model", "version", "stage", "size", "sha256", "created", "metadata"]
    rows = [[d["name"], d["version"], d["stage"], d["size_bytes"], d["checksum"][:12],
             _when(d["created_at"]), json.dumps(d["metadata"]) if d["metadata"] else ""]
            for d in data]
    _table(f"models in {args.file}", columns, rows)
    return 0


def _cmd_mlflow_push(args: argparse.Namespace) -> int:
    # Read-only first, so a missing FILE is an error before mlflow loads.
    _open(args.file).close()
    from .integrations.mlflow_push import push

    def say(line: str) -> None:
        if not args.json and not args.quiet:
            print(line)

    counts = push(args.file, args.to, experiments=args.experiment or None,
                  models=not args.no_models, traces=not args.no_traces, log=say,
                  progress=not (args.quiet or args.no_progress))
    if args.json:
        print(_dump({"to": args.to, **counts}))
    else:
        print(f"pushed {counts['runs']} runs ({counts['runs_skipped']} already there), "
              f"{counts['metrics']} metric values, {counts['artifacts']} artifacts, "
              f"{counts['datasets']} dataset inputs, {counts['logged_models']} logged models "
              f"({counts['logged_models_skipped']} already there), {counts['traces']} traces "
              f"({counts['traces_skipped']} already there) and "
              f"{counts['model_versions']} model versions "
              f"({counts['model_versions_skipped']} already there) to {args.to}")
    return 0


# ------------------------------------------------------------------- parser
class _HelpFormatter(argparse.HelpFormatter):
    # argparse measures subcommand names without their extra indent, so the
    # help of a name longer than 9 characters ("mlflow-push") would wrap onto
    # its own line in `synadb --help`.
    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if action.help is not argparse.SUPPRESS and isinstance(action,
                                                                argparse._SubParsersAction):
            longest = max((len(a.metavar or a.dest) for a in action._get_subactions()),
                          default=0)
            self._action_max_length = max(self._action_max_length, longest
                                          + self._current_indent + self._indent_increment)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``synadb`` command."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Inspect, check, compact and export a synadb database file.",
        epilog="Every command but compact opens FILE read-only and never changes it.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help: str, func: Callable[[argparse.Namespace], int],
                ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help[:1].upper() + help[1:] + ".")
        p.add_argument("file", metavar="FILE", help="the database file")
        p.set_defaults(func=func, parser=p)
        return p

    p = command("info", "show the path, size, key count and format version", _cmd_info)
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = command("keys", "list live keys, one per line, in first-written order", _cmd_keys)
    p.add_argument("pattern", metavar="PATTERN", nargs="?",
                   help='glob that keys must match, e.g. "sensor/*"')
    p.add_argument("--limit", metavar="N", type=_non_negative,
                   help="print at most N keys")
    p.add_argument("--json", action="store_true", help="print one JSON list")

    p = command("get", "print the latest value of a key", _cmd_get)
    p.add_argument("key", metavar="KEY")
    p.add_argument("--base64", action="store_true",
                   help="print bytes as base64 instead of hex")
    p.add_argument("--json", action="store_true", help="print the value as JSON")

    p = command("history", "print every value of a key, oldest first", _cmd_history)
    p.add_argument("key", metavar="KEY")
    p.add_argument("--limit", metavar="N", type=_non_negative,
                   help="print only the N most recent values")
    p.add_argument("--json", action="store_true", help="print one JSON list")
    p.add_argument("--base64", action="store_true",
                   help="print bytes as base64 instead of hex")

    p = command("verify", "scan every record for damage; exit 1 if any is found", _cmd_verify)
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = command("compact", "rewrite the file without deleted keys (opens it for writing)",
                _cmd_compact)
    p.add_argument("--drop-history", action="store_true",
                   help="keep only the latest value of each key")
    p.add_argument("--no-progress", action="store_true", help="show no progress bar")
    p.add_argument("--json", action="store_true", help="print the sizes as JSON")

    p = command("export", "write keys and their histories to another format", _cmd_export)
    p.add_argument("out", metavar="OUT", nargs="?",
                   help="the file to write (default: FILE's name with the format's extension)")
    p.add_argument("--format", choices=EXPORT_FORMATS,
                   help="output format (default: from OUT's extension)")
    p.add_argument("--pattern", metavar="GLOB", help="export only keys matching GLOB")
    p.add_argument("--prefix", metavar="P", help="export only keys starting with P")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = command("runs", "list experiment runs with their status and last metrics", _cmd_runs)
    p.add_argument("--experiment", metavar="NAME", help="only this experiment's runs")
    p.add_argument("--status", metavar="S", help="only runs with this status, e.g. failed")
    p.add_argument("--sort", metavar="METRIC_OR_PARAM",
                   help="sort by a metric's last value or a param")
    p.add_argument("--desc", action="store_true", help="sort descending")
    p.add_argument("--limit", metavar="N", type=_non_negative, help="show at most N runs")
    p.add_argument("--json", action="store_true", help="print the runs as JSON")

    p = command("models", "list registered models: versions, stages, sizes, checksums",
                _cmd_models)
    p.add_argument("--name", metavar="MODEL", help="only this model's versions")
    p.add_argument("--json", action="store_true", help="print the versions as JSON")

    p = command("mlflow-push", "copy experiments, runs, logged models, traces and registered "
                "models to an MLflow tracking server (needs synadb[mlflow]; pushing again "
                "adds only what is new)",
                _cmd_mlflow_push)
    p.add_argument("--to", metavar="URL", required=True,
                   help="the MLflow tracking server, e.g. http://127.0.0.1:5000")
    p.add_argument("--experiment", metavar="NAME", action="append",
                   help="push only this experiment (repeatable; default: all)")
    p.add_argument("--no-models", action="store_true",
                   help="do not push the file's registered models")
    p.add_argument("--no-traces", action="store_true", help="do not push the file's traces")
    p.add_argument("--no-progress", action="store_true", help="show no progress bar")
    p.add_argument("--quiet", action="store_true",
                   help="print only the summary (and show no progress bar)")
    p.add_argument("--json", action="store_true", help="print the counts as one JSON object")

    from .studio import add_parser as add_studio

    add_studio(sub)
    return parser


def _error(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    """Run the ``synadb`` command; returns the exit code.

    Args:
        argv: the arguments after the program name (default ``sys.argv[1:]``).

    Returns:
        0 on success, 1 on an error (or damage found by verify), 2 on bad usage.
    """
    try:
        args = build_parser().parse_args(argv)
        code: int = args.func(args)
        return code
    except SystemExit as e:  # --help, --version and usage errors (parser.error)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except BrokenPipeError:
        # `synadb keys big.db | head`: the reader left; stop quietly.  Point
        # stdout at devnull so the interpreter's final flush does not fail too.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 1
    except KeyboardInterrupt:
        return 130
    except (SynaError, OSError) as e:
        return _error(str(e) or type(e).__name__)


if __name__ == "__main__":
    raise SystemExit(main())
