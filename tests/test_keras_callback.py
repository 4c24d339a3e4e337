"""SynaKerasCallback: Keras 3 ``model.fit`` logs runs into a synadb file.

A real ``fit`` of a tiny dense model on numpy data (the tensorflow backend),
read back through the tracker, the registry and the MLflow-style shim.
"""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

# Keras 3.15 on TF 2.21 and NumPy 2 warns inside its own model.save (TF's
# variables' __array__ takes no copy keyword): not ours to fix.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

from synadb import Experiment, ExperimentTracker, InvalidArgument, ModelRegistry  # noqa: E402
from synadb.integrations.keras import SynaKerasCallback  # noqa: E402


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = (x.sum(axis=1) > 0).astype("float32")
    return x, y


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")], name="tiny_mlp")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01),
                  loss="binary_crossentropy", metrics=["accuracy"])
    return model


def test_fit_logs_params_epoch_and_batch_metrics_and_the_model(tmp_path, shim):
    path = str(tmp_path / "runs.db")
    x, y = _data()
    model = _model()
    callback = SynaKerasCallback(path, experiment="keras", run_name="mlp", tags={"team": "a"},
                                 log_every_n_batches=2, registered_model_name="mlp")
    history = model.fit(x, y, epochs=3, batch_size=8, validation_split=0.25, verbose=0,
                        callbacks=[callback])
    run_id = callback.run_id

    with ExperimentTracker(path) as tracker:
        (run,) = tracker.list_runs("keras")
        assert run.id == run_id and run.name == "mlp" and run.tag_values == {"team": "a"}
        assert run.status == "Completed"
        assert run.params["epochs"] == "3" and run.params["steps"] == "6"
        assert run.params["optimizer.class"] == "Adam"
        assert float(run.params["optimizer.learning_rate"]) == pytest.approx(0.01)
        assert run.params["model.name"] == "tiny_mlp"
        assert run.params["model.num_parameters"] == str(model.count_params())
        # Epoch metrics as Keras' History has them, at step = epoch.
        for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
            got = tracker.get_metric(run_id, name)
            assert [s for s, _ in got] == [0, 1, 2]
            assert [v for _, v in got] == pytest.approx(history.history[name], rel=1e-6)
        # Every 2nd of the 6 batches an epoch, counted over the whole fit.
        assert [s for s, _ in tracker.get_metric(run_id, "batch/loss")] == list(range(1, 18, 2))

    with ModelRegistry(path) as registry:
        (v,) = registry.list_versions("mlp")
        assert v.metadata["run_id"] == run_id and v.metadata["epoch"] == 2
        assert v.metadata["val_loss"] == pytest.approx(history.history["val_loss"][-1])
        back = registry.load_keras("mlp")
    assert callback.model_version.version == v.version
    np.testing.assert_allclose(back.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6)

    shim.set_tracking_uri(path)
    (mrun,) = shim.search_runs(experiment_names=["keras"], output_format="list")
    assert mrun.info.run_id == run_id and mrun.info.status == "FINISHED"
    assert mrun.data.metrics["val_loss"] == pytest.approx(history.history["val_loss"][-1])
    assert mrun.data.params["optimizer.class"] == "Adam"


def test_a_crash_in_fit_ends_the_run_failed(tmp_path):
    path = str(tmp_path / "runs.db")

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("diverged")

    x, y = _data()
    with pytest.raises(RuntimeError, match="diverged"):
        with SynaKerasCallback(path, experiment="keras") as callback:
            _model().fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[callback, Crash()])
    with ExperimentTracker(path) as tracker:
        (run,) = tracker.list_runs("keras")
        assert run.status == "Failed" and "diverged" in run.error
        assert [s for s, _ in tracker.get_metric(run.id, "loss")] == [0, 1]
    with ModelRegistry(path) as registry:
        assert registry.list_models() == []


def test_logs_into_an_existing_synadb_run(tmp_path):
    path = str(tmp_path / "runs.db")
    x, y = _data()
    with Experiment("objects", path) as exp:
        with exp.start_run(name="mine") as run:
            callback = SynaKerasCallback(path, run=run, log_model=False)
            _model().fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[callback])
            assert exp.get_run(run.id).status == "Running"  # the caller's to end
        got = exp.get_run(run.id)
        assert got.status == "Completed" and got.params["epochs"] == "2"
        assert [s for s, _ in got.get_metric("loss")] == [0, 1]


def test_a_run_alone_cannot_store_the_model(tmp_path):
    with Experiment("objects", str(tmp_path / "runs.db")) as exp, exp.start_run() as run:
        with pytest.raises(InvalidArgument, match="log_model"):
            SynaKerasCallback(run=run)
        assert SynaKerasCallback(run=run, log_model=False).run_id == run.id


def test_logs_into_a_run_of_the_mlflow_shim(tmp_path, shim):
    path = str(tmp_path / "runs.db")
    shim.set_tracking_uri(f"synadb://{path}")
    shim.set_experiment("via-mlflow")
    x, y = _data()
    with shim.start_run(run_name="keras") as active:
        callback = SynaKerasCallback(run=active, registered_model_name="keras-model")
        _model().fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[callback])
    got = shim.get_run(active.info.run_id)
    assert got.info.status == "FINISHED" and got.data.params["epochs"] == "2"
    assert "loss" in got.data.metrics
    with ModelRegistry(path) as registry:
        (v,) = registry.list_versions("keras-model")
        assert v.metadata["run_id"] == active.info.run_id


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_log_every_n_batches_must_be_a_positive_int(tmp_path, bad):
    with pytest.raises(InvalidArgument, match="log_every_n_batches"):
        SynaKerasCallback(str(tmp_path / "runs.db"), log_every_n_batches=bad)


def test_without_keras_the_import_names_the_extra():
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys; sys.modules['keras'] = None\n"
            "import synadb\n"
            "try:\n    import synadb.integrations.keras\n"
            "except synadb.MissingDependency as e:\n"
            "    print('extra', e.extra, 'pip install' in str(e))\n")
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": root})
    assert out.stdout.split() == ["extra", "tensorflow", "True"]
