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
    synadb metrics experiments.db 3f2a            # a run's metrics
    synadb metrics experiments.db 3f2a loss       # one metric's history
    synadb models models.db
    synadb studio experiments.db --port 8501
    synadb mlflow-push experiments.db --to http://127.0.0.1:5000

Every command but ``compact`` opens the file read-only: it never changes the
file, never creates one, and never waits for a writer's lock.  Every command
takes ``--json`` for output that programs read; tables are drawn with
``rich`` when it is installed and stdout is a terminal.  A tracker metric's
key (``run/<id>/m/<name>``) shows its rows as step, value and time.

Every error, whichever command meets it, is one line ``synadb: error:
<message>`` on stderr: exit code 1 for errors, 2 for usage errors (which
print the usage first, as argparse does).  ``SYNADB_TRACEBACK=1`` shows
the traceback of an unexpected error instead.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import re
import sys
from typing import Any, Callable, NoReturn

from . import __version__
from .errors import InvalidArgument, InvalidPath, KeyNotFound, SynaError

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
# run/<run id>/m/<metric>: (value, step, unix time) float rows; see tracking.py.
METRIC_KEY = re.compile(r"run/([^/]+)/m/(.+)")
# Bytes longer than this print as a preview: a 1.3 MB artifact would print
# 2.6 million hex digits.
BYTES_PREVIEW = 32
SPARK = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 60


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


def _tty() -> bool:
    # One place to ask, so tests can pretend to be a terminal.
    return sys.stdout.isatty()


def _size(n: int) -> str:
    """A byte count as people read it (1.3 MiB), with the exact count."""
    if n < 1024:
        return f"{n} bytes"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if size < 1024 or unit == "TiB":
            break
    return f"{size:.1f} {unit}, {n:,} bytes"


def _preview(raw: bytes, b64: bool, full: bool) -> str:
    """Bytes as hex (or base64): whole when short or asked for, else the
    first BYTES_PREVIEW bytes and the size."""
    if full or len(raw) <= BYTES_PREVIEW:
        return base64.b64encode(raw).decode("ascii") if b64 else raw.hex()
    head = raw[:BYTES_PREVIEW]
    shown = base64.b64encode(head).decode("ascii") if b64 else head.hex()
    return f"{shown}... ({_size(len(raw))}; --full prints all of it)"


def _jsonable(value: Any, b64: bool) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        return base64.b64encode(raw).decode("ascii") if b64 else raw.hex()
    if hasattr(value, "dtype") and getattr(value, "ndim", 0) == 1:
        return _float32_list(value)
    return value


def _plain(value: Any, b64: bool, full: bool = False) -> str:
    """One value as one line of text (text values are printed as they are)."""
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _preview(bytes(value), b64, full)
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
    if _tty():
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


def _when_ms(ts: float | None) -> str:
    # Metric rows are logged many per second: keep the milliseconds.
    if ts is None or not math.isfinite(ts):
        return ""
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _num(v: Any) -> str:
    if v is None:
        return ""
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _sparkline(values: Any, width: int = SPARK_WIDTH) -> str:
    """Values as one line of block characters (bucket means when there are
    more values than ``width``); NaN and infinities are blanks."""
    import numpy as np

    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return ""
    if v.size > width:
        edges = np.linspace(0, v.size, width + 1).astype(int)
        with np.errstate(invalid="ignore"):
            v = np.array([np.nanmean(np.where(np.isfinite(c), c, np.nan))
                          if np.isfinite(c).any() else np.nan
                          for c in np.split(v, edges[1:-1])])
    finite = v[np.isfinite(v)]
    if finite.size == 0:
        return " " * v.size
    lo, hi = float(finite.min()), float(finite.max())
    span = hi - lo
    out = []
    for x in v.tolist():
        if not math.isfinite(x):
            out.append(" ")
        else:
            i = 0 if span == 0 else int((x - lo) / span * (len(SPARK) - 1) + 0.5)
            out.append(SPARK[i])
    return "".join(out)


def _metric_rows(db: Any, key: str) -> Any:
    """A tracker metric key's history as an (n, 3) array of (value, step,
    time), or None if ``key`` is not one."""
    if METRIC_KEY.fullmatch(key) is None:
        return None
    try:
        flat = db.get_history_tensor(key)
    except SynaError:  # not floats: a key that only looks like a metric's
        return None
    if flat.ndim != 1 or flat.size == 0 or flat.size % 3:
        return None
    return flat.reshape(-1, 3)


def _row_dict(row: Any) -> dict[str, Any]:
    value, step, ts = (float(x) for x in row)
    return {"step": int(step), "value": value, "time": ts}


def _print_metric_rows(rows: Any, title: str, as_json: bool) -> None:
    data = [_row_dict(r) for r in rows]
    if as_json:
        print(_dump(data))
        return
    if _tty() and len(data) > 1:
        print(f"{title}  {_sparkline(rows[:, 0])}")
    _table(title, ["step", "value", "time"],
           [[d["step"], repr(d["value"]), _when_ms(d["time"])] for d in data])


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
        # A tracker metric's last float is the time of its last row; show the row.
        rows = _metric_rows(db, args.key) if isinstance(value, float) else None
    if rows is not None:
        if args.json:
            print(_dump(_row_dict(rows[-1])))
        else:
            _print_metric_rows(rows[-1:], args.key, False)
        return 0
    if args.json:
        print(_dump(_jsonable(value, args.base64)))
    else:
        print(_plain(value, args.base64, args.full))
    return 0


def _cmd_history(args: argparse.Namespace) -> int:
    with _open(args.file) as db:
        if args.key not in db:
            raise _missing(args.key, db.path)
        rows = _metric_rows(db, args.key)
        values = db.get_history(args.key) if rows is None else []
    if rows is not None:
        if args.limit is not None:
            rows = rows[len(rows) - args.limit:] if args.limit else rows[:0]
        _print_metric_rows(rows, args.key, args.json)
        return 0
    if args.limit is not None:
        values = values[len(values) - args.limit:] if args.limit else []
    if args.json:
        print(_dump([_jsonable(v, args.base64) for v in values]))
    else:
        for v in values:
            print(_plain(v, args.base64, args.full))
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
    if not report.ok:  # the report is the output; the failure still gets the error line
        return _error(f"{report.path!r} has {len(report.damaged)} damaged "
                      f"record{'s' if len(report.damaged) != 1 else ''}")
    return 0


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
    # Check the destination before exporting: the writer goes through a
    # temporary file beside OUT, whose name would otherwise be the one the
    # error shows.
    folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(folder):
        why = "is not a folder" if os.path.exists(folder) else "does not exist"
        raise InvalidPath(f"cannot write {args.out!r}: the folder {folder!r} {why}")
    if os.path.isdir(args.out):
        raise InvalidPath(f"cannot write {args.out!r}: it is a folder; name a file in it")
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
        if args.sort:
            _check_sort(args.sort, tracker.list_runs(args.experiment or None), args.file)
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


# Run fields --sort accepts besides metrics and params (tracking_query.sorted_runs).
SORT_ATTRIBUTES = ("start_time", "end_time", "name", "status", "id")


def _check_sort(sort: str, runs: list[Any], path: str) -> None:
    """Refuse a --sort that names nothing the runs have: sorting by it would
    silently keep the listing order (issue 15)."""
    kind, _, field = sort.partition(".") if sort.startswith(
        ("metrics.", "params.", "attributes.")) else ("", "", sort)
    metrics = sorted({m for r in runs for m in r.metric_names})
    params = sorted({p for r in runs for p in r.params})
    known = {"metrics": metrics, "params": params, "attributes": list(SORT_ATTRIBUTES),
             "": metrics + params + list(SORT_ATTRIBUTES)}[kind]
    if field in known or not runs:
        return
    what = {"metrics": "metric", "params": "param", "attributes": "run attribute"}.get(
        kind, "metric, param or run attribute")
    raise InvalidArgument(
        f"cannot sort by {sort!r}: no run in {path!r} has a {what} {field!r}; "
        f"metrics: {', '.join(metrics) or 'none'}; params: {', '.join(params) or 'none'}; "
        f"attributes: {', '.join(SORT_ATTRIBUTES)}")


def _find_run(tracker: Any, ref: str) -> Any:
    """The run whose id is ``ref``, or whose id starts with it, or whose name
    it is; an error when none or several match."""
    runs = tracker.list_runs()
    for match in (lambda r: r.id == ref, lambda r: r.id.startswith(ref),
                  lambda r: r.name == ref):
        found = [r for r in runs if match(r)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            listed = ", ".join(f"{r.id[:12]} ({r.name})" for r in found[:10])
            raise InvalidArgument(f"{ref!r} matches {len(found)} runs in {tracker.path!r}: "
                                  f"{listed}; give more of the run id")
    raise KeyNotFound(f"no run {ref!r} in {tracker.path!r} (give a run id, a unique "
                      "prefix of one, or a run name; `synadb runs FILE` lists them)")


def _cmd_metrics(args: argparse.Namespace) -> int:
    import numpy as np

    from .tracking import ExperimentTracker

    _open(args.file).close()  # a missing or foreign FILE: the same errors as every command
    with ExperimentTracker(args.file, read_only=True) as tracker:
        run = _find_run(tracker, args.run)
        names = run.metric_names
        if args.metric is not None:
            if args.metric not in names:
                raise KeyNotFound(f"run {run.id[:12]} ({run.name}) has no metric "
                                  f"{args.metric!r}; it has {', '.join(names) or 'none'}")
            count = tracker.metric_count(run.id, args.metric)
            start = 0 if args.limit is None else max(count - args.limit, 0)
            rows = tracker.metric_rows(run.id, args.metric, start)
            if args.limit == 0:
                rows = rows[:0]
            if args.json:
                print(_dump({"run": run.id, "name": run.name, "metric": args.metric,
                             "rows": [_row_dict(r) for r in rows]}))
            else:
                _print_metric_rows(rows, f"{args.metric} of run {run.id[:12]} ({run.name})",
                                   False)
            return 0
        summary = []
        for name in names:
            rows = tracker.metric_rows(run.id, name)
            values = rows[:, 0]
            finite = values[~np.isnan(values)]
            summary.append({
                "metric": name,
                "latest": float(values[-1]) if len(values) else None,
                "min": float(finite.min()) if len(finite) else None,
                "max": float(finite.max()) if len(finite) else None,
                "count": int(len(values)),
                "last_step": int(rows[-1, 1]) if len(rows) else None,
                "_values": values,
            })
    if args.json:
        print(_dump({"run": run.id, "name": run.name, "experiment": run.experiment,
                     "status": str(run.status),
                     "metrics": [{k: v for k, v in m.items() if k != "_values"}
                                 for m in summary]}))
        return 0
    columns = ["metric", "latest", "min", "max", "count", "last step"]
    spark = _tty()
    if spark:
        columns.append("trend")
    rows_out = [[m["metric"], _num(m["latest"]), _num(m["min"]), _num(m["max"]), m["count"],
                 m["last_step"]] + ([_sparkline(m["_values"], 30)] if spark else [])
                for m in summary]
    _table(f"metrics of run {run.id[:12]} ({run.name}, {run.experiment}, {run.status})",
           columns, rows_out)
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
    if args.experiment:
        from .tracking import ExperimentTracker

        with ExperimentTracker(args.file, read_only=True) as tracker:
            have = tracker.list_experiments()
        absent = [e for e in args.experiment if e not in have]
        if absent:  # pushing nothing and exiting 0 would look like success
            raise KeyNotFound(f"no experiment {', '.join(map(repr, absent))} in "
                              f"{args.file!r}; it has {', '.join(have) or 'none'}")
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


class _Parser(argparse.ArgumentParser):
    """argparse with synadb's error line: usage errors read ``synadb: error:
    <message>`` (after the usage) like every other error, not ``synadb
    keys: error: ...``.  Subparsers are made from this class too."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{PROG}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``synadb`` command."""
    parser = _Parser(
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

    full_help = (f"print bytes longer than {BYTES_PREVIEW} in full (default: a preview "
                 "and the size)")
    p = command("get", "print the latest value of a key (a tracker metric's key: its "
                "last step, value and time)", _cmd_get)
    p.add_argument("key", metavar="KEY")
    p.add_argument("--base64", action="store_true",
                   help="print bytes as base64 instead of hex")
    p.add_argument("--full", action="store_true", help=full_help)
    p.add_argument("--json", action="store_true",
                   help="print the value as JSON (bytes in full; a metric row as "
                        '{"step", "value", "time"})')

    p = command("history", "print every value of a key, oldest first (a tracker metric's "
                "key: a step/value/time table)", _cmd_history)
    p.add_argument("key", metavar="KEY")
    p.add_argument("--limit", metavar="N", type=_non_negative,
                   help="print only the N most recent values")
    p.add_argument("--json", action="store_true", help="print one JSON list")
    p.add_argument("--base64", action="store_true",
                   help="print bytes as base64 instead of hex")
    p.add_argument("--full", action="store_true", help=full_help)

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

    p = command("metrics", "show a run's metrics (latest, min, max, count) or one "
                "metric's history, with a sparkline on a terminal", _cmd_metrics)
    p.add_argument("run", metavar="RUN", help="a run id, a unique prefix of one, or a run name")
    p.add_argument("metric", metavar="METRIC", nargs="?",
                   help="show this metric's rows: step, value, time")
    p.add_argument("--limit", metavar="N", type=_non_negative,
                   help="with METRIC: only the N most recent rows")
    p.add_argument("--json", action="store_true", help="print one JSON object")

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

    studio = add_studio(sub)
    # Studio's own handler reports errors its own way; run it through ours,
    # so `synadb studio missing.db` fails as `synadb info missing.db` does.
    studio.set_defaults(func=_cmd_studio)
    return parser


def _cmd_studio(args: argparse.Namespace) -> int:
    # A missing, empty or foreign FILE fails here, with every command's
    # messages, before Starlette and uvicorn load.
    _open(args.file).close()
    from .studio import serve

    try:  # serves until Ctrl-C; a port in use is an OSError, reported by main()
        serve(args.file, port=args.port, host=args.host, allow_writes=args.allow_writes,
              open_browser=args.open_browser, print_json=getattr(args, "json", False))
    except KeyboardInterrupt:
        return 130
    return 0


def _message(e: BaseException) -> str:
    """An error as one line: OSErrors without their "[Errno N]" prefix."""
    if isinstance(e, OSError) and not isinstance(e, SynaError) and e.strerror:
        text = e.strerror
        if e.filename is not None and str(e.filename) not in text:
            text += f": {e.filename}"
        return text
    text = str(e) or type(e).__name__
    return " ".join(text.split()) if "\n" in text and len(text) < 500 else text


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
        return _error(_message(e))
    except Exception as e:
        # A failure synadb did not foresee (a bug, or a library below it):
        # still one line in the same format, with the type to search for.
        if os.environ.get("SYNADB_TRACEBACK"):
            raise
        return _error(f"{type(e).__name__}: {_message(e)} (SYNADB_TRACEBACK=1 shows where)")


if __name__ == "__main__":
    raise SystemExit(main())
