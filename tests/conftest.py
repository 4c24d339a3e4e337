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

    from mlflow.environment_variables import MLFLOW_EXPERIMENT_ID, MLFLOW_REGISTRY_URI

    while mlflow.active_run() is not None:
        mlflow.end_run()
    fluent._active_experiment_id = None  # set_experiment also exports it:
    MLFLOW_EXPERIMENT_ID.unset()
    fluent._reset_last_logged_model_id()
    # The registry follows the tracking URI again (set_registry_uri pins it,
    # and exports it to the environment too).
    mlflow.set_registry_uri(None)
    MLFLOW_REGISTRY_URI.unset()


_MLFLOW_ENV = ("MLFLOW_EXPERIMENT_ID", "MLFLOW_REGISTRY_URI", "MLFLOW_TRACKING_URI")


@pytest.fixture
def shim():
    """synadb's MLflow-style shim (``import synadb.integrations.mlflow as
    mlflow``), reset after the test: it keeps one handle per file and the
    active run and experiment across calls."""
    import synadb.integrations.mlflow as mlflow

    mlflow._STATE.experiment = None
    yield mlflow
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow._STATE.close()
    mlflow._STATE.uri = None
    mlflow._STATE.experiment = None


@pytest.fixture
def uri(tmp_path, shim):
    """The shim pointed at a fresh ``experiments.db``; yields its path."""
    path = tmp_path / "experiments.db"
    shim.set_tracking_uri(f"synadb://{path}")
    yield str(path)


@pytest.fixture(autouse=True)
def _keep_mlflow_env():
    """mlflow.set_experiment and set_registry_uri export MLFLOW_* variables
    to os.environ; a test that calls them must not point the next test at
    its file."""
    before = {k: os.environ.get(k) for k in _MLFLOW_ENV}
    yield
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


# Debian's chromium, for the browser tests (Studio, MLflow's UI); never downloaded.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium chromium-driver)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()
