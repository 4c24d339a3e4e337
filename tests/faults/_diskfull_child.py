"""Fill a real (small tmpfs) disk through synadb; run by test_disk_full.py in
its own process, so that a SIGBUS (a store into a mapped page the file
system has no room for) kills this process and not pytest.

Usage: python _diskfull_child.py FOLDER.  Prints one JSON object:
``{"problems": [...], "notes": [...]}``.
"""

from __future__ import annotations

import errno
import json
import os
import random
import sys


def main(folder: str) -> dict:
    import synadb
    from synadb import SynaDB

    problems: list[str] = []
    notes: list[str] = []
    path = os.path.join(folder, "full.db")
    rng = random.Random(4)
    acked: dict[str, bytes] = {}

    def filler(name: str, size: int) -> str:
        p = os.path.join(folder, name)
        with open(p, "wb") as f:
            f.write(os.urandom(size))
            f.flush()
            os.fsync(f.fileno())
        return p

    def squeeze() -> str | None:
        """Take whatever space is left, 4 KiB at a time."""
        p = os.path.join(folder, "squeeze")
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            while True:
                try:
                    os.write(fd, b"\xff" * 4096)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
        finally:
            os.close(fd)
        return p

    def check_reopen(what: str) -> None:
        try:
            with SynaDB(path, read_only=True) as r:
                keys = set(r.keys())
                lost = [k for k in acked if k not in keys]
                wrong = [k for k in acked if k in keys and r.get_bytes(k) != acked[k]]
                unknown = sorted(keys - set(acked))
            if lost or wrong or unknown:
                problems.append(f"{what}: a new handle lost {len(lost)} acknowledged values "
                                f"{lost[:3]}, {len(wrong)} changed {wrong[:3]}, unknown keys "
                                f"{unknown[:3]}")
        except Exception as e:  # noqa: BLE001
            problems.append(f"{what}: reopening raised {type(e).__name__}: {e}")

    def fill(db, tag: str, limit: int = 5000):
        """Put 2 KB values until the disk is full; returns the error or None."""
        for i in range(limit):
            k, v = f"{tag}/{i:05d}", rng.randbytes(2048)
            try:
                db.put_bytes(k, v)
            except Exception as e:  # noqa: BLE001
                return e
            acked[k] = v
        return None

    def is_disk_full(e: BaseException) -> bool:
        return (isinstance(e, synadb.DiskFull) and isinstance(e, OSError)
                and e.errno == errno.ENOSPC)

    f1 = filler("filler1", 192 << 10)
    f2 = filler("filler2", 192 << 10)
    db = SynaDB(path)

    # 1. Fill: the failure is a DiskFull, and everything acknowledged is there.
    err = fill(db, "a")
    if err is None:
        problems.append("5000 puts of 2 KB on a 1 MiB file system never failed")
    elif not is_disk_full(err):
        problems.append(f"a full disk raised {type(err).__module__}.{type(err).__name__}: "
                        f"{err} (errno {getattr(err, 'errno', None)}), not synadb.DiskFull")
    notes.append(f"filled after {len(acked)} puts: {type(err).__name__ if err else None}")
    check_reopen("after the disk filled up")

    # 2. Free space: the same handle writes again.
    os.unlink(f1)
    for i in range(10):
        k, v = f"b/{i}", rng.randbytes(2048)
        try:
            db.put_bytes(k, v)
            acked[k] = v
        except Exception as e:  # noqa: BLE001
            problems.append(f"after space was freed, put {i} of the same handle raised "
                            f"{type(e).__name__}: {e}")
            break
    check_reopen("after space was freed and the same handle wrote again")

    # 3. Full again, to the last block; then compaction must fail cleanly.
    err = fill(db, "c")
    if err is not None and not is_disk_full(err):
        problems.append(f"the second fill raised {type(err).__name__}: {err}, not DiskFull")
    sq = squeeze()
    try:
        db.compact(progress=False)
    except Exception as e:  # noqa: BLE001
        if not is_disk_full(e):
            problems.append(f"compaction on a full disk raised {type(e).__module__}."
                            f"{type(e).__name__}: {e}, not synadb.DiskFull")
        notes.append(f"compaction on a full disk: {type(e).__name__}")
    else:
        notes.append("compaction on a full disk succeeded (it found room)")
    stale = [f for f in os.listdir(folder) if ".compact-" in f]
    if stale:
        problems.append(f"compaction on a full disk left {stale} behind")
    check_reopen("after compaction failed on a full disk")

    # 4. Free space again: later writes of the same handle survive a reopen.
    os.unlink(sq)
    os.unlink(f2)
    for i in range(10):
        k, v = f"d/{i}", rng.randbytes(2048)
        try:
            db.put_bytes(k, v)
            acked[k] = v
        except Exception as e:  # noqa: BLE001
            problems.append(f"after the failed compaction and freeing space, put {i} of the "
                            f"same handle raised {type(e).__name__}: {e}")
            break
    try:
        db.close()
    except Exception as e:  # noqa: BLE001
        problems.append(f"close raised {type(e).__name__}: {e}")
    check_reopen("after the failed compaction, later writes and close")
    with SynaDB(path, read_only=True) as r:
        rep = r.verify()
        if not rep.ok:
            problems.append(f"verify() after all that: {rep}")
    return {"problems": problems, "notes": notes}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
