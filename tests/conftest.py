import os
import sys

import pytest

# Tests run against the source tree even without an install.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "test.db")


@pytest.fixture
def durability_events(monkeypatch):
    """Record fsyncs (by path) and renames, then do them: how a file was
    made durable.  Nothing is faked; the calls go through."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.path.realpath(os.readlink(f"/proc/self/fd/{fd}"))))
        return real_fsync(fd)

    def replace(src, dst, **kw):
        events.append(("rename", os.path.realpath(src), os.path.realpath(dst)))
        return real_replace(src, dst, **kw)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def forget_mlflow_state() -> None:
    """Real mlflow keeps its active experiment id and last logged model
    across tracking URIs (a process uses one store): tests that give each
    test its own file start it afresh."""
    import mlflow
    import mlflow.tracking.fluent as fluent

    from mlflow.environment_variables import MLFLOW_EXPERIMENT_ID

    while mlflow.active_run() is not None:
        mlflow.end_run()
    fluent._active_experiment_id = None  # set_experiment also exports it:
    MLFLOW_EXPERIMENT_ID.unset()
    fluent._reset_last_logged_model_id()


@pytest.fixture(autouse=True)
def _keep_mlflow_experiment_env():
    """mlflow.set_experiment exports MLFLOW_EXPERIMENT_ID to os.environ; a
    test that calls it must not point the next test's file at its id."""
    before = os.environ.get("MLFLOW_EXPERIMENT_ID")
    yield
    if before is None:
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    else:
        os.environ["MLFLOW_EXPERIMENT_ID"] = before
