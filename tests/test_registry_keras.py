"""Model registry and Keras 3 models: the native .keras zip, checksummed, loaded safely.

Regression: ``ModelRegistry.save_model(name, keras_model)`` was refused
("cannot save a Sequential as a model").
"""

import hashlib
import io
import os
import pickle
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TF loads: its C++ log is noise here

import numpy as np
import pytest

import synadb
from synadb import ModelRegistry, errors

keras = pytest.importorskip("keras")

# Keras 3.15 on TF 2.21 and NumPy 2 warns inside its own model.save (TF's
# variables' __array__ takes no copy keyword).  Python hides it outside
# tests; here warnings are errors, and it is not ours to fix.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

ROOT = str(Path(__file__).resolve().parents[1])
X = np.random.default_rng(3).standard_normal((16, 4)).astype(np.float32)


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "models.db")


def _trained_sequential():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3)])
    model.compile("adam", "mse")
    model.fit(X, np.ones((16, 3), np.float32), epochs=1, verbose=0, shuffle=False)
    return model


def _functional():
    inp = keras.Input((4,), name="features")
    hidden = keras.layers.Dense(5, activation="tanh")(inp)
    out = keras.layers.Concatenate()([keras.layers.Dense(2)(hidden), hidden])
    return keras.Model(inp, out, name="two_heads")


def _same_predictions(a, b):
    return np.array_equal(np.asarray(a.predict(X, verbose=0)),
                          np.asarray(b.predict(X, verbose=0)))


def test_sequential_round_trip_keeps_predictions_and_optimizer_state(path):
    model = _trained_sequential()
    with ModelRegistry(path) as reg:
        v = reg.save_model("clf", model, {"accuracy": "0.9"})
        assert v.format == "keras" and v.version == 1 and v.metadata == {"accuracy": "0.9"}
    with ModelRegistry(path) as reg:  # a fresh handle: only what is in the file
        assert reg.get_version("clf", 1).format == "keras"
        loaded = reg.load_keras("clf")
        assert isinstance(loaded, keras.Model) and _same_predictions(model, loaded)
        # Compiled and trained: the optimizer comes back with its step count.
        assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) == 1
        assert loaded.loss == "mse"
        assert reg.verify("clf") and reg.verify()


def test_functional_model_round_trip(path):
    model = _functional()
    with ModelRegistry(path) as reg:
        reg.save_model("heads", model)
        loaded = reg.load_keras("heads", version=1)
    assert loaded.name == "two_heads" and _same_predictions(model, loaded)


def test_load_model_keeps_its_contract_the_bytes_of_the_keras_zip(path):
    # API.md: ``data, info = registry.load_model(name)`` gives the stored
    # bytes, whatever was saved; they are the native .keras file.
    model = _functional()
    with ModelRegistry(path) as reg:
        v = reg.save_model("m", model)
        data, info = reg.load_model("m")
        assert isinstance(data, bytes) and info.format == "keras"
        assert hashlib.sha256(data).hexdigest() == v.checksum == info.checksum
        assert len(data) == v.size_bytes
        assert {"config.json", "metadata.json", "model.weights.h5"} <= set(
            zipfile.ZipFile(io.BytesIO(data)).namelist())
        out = os.path.join(os.path.dirname(path), "copy.keras")
        reg.load_to_file("m", out)
    assert _same_predictions(model, keras.saving.load_model(out))


def test_stages_work_for_keras_versions(path):
    with ModelRegistry(path) as reg:
        reg.save_model("m", _functional())
        reg.save_model("m", _trained_sequential())
        reg.set_stage("m", 1, "Production")
        assert reg.load_keras("m", stage="Production").name == "two_heads"
        assert isinstance(reg.load_keras("m").layers[0], keras.layers.Dense)  # latest


def test_nothing_is_unpickled_on_load(path, monkeypatch):
    model = _trained_sequential()
    with ModelRegistry(path) as reg:
        reg.save_model("m", model)

        def refuse(*args, **kwargs):
            raise AssertionError("something was unpickled")

        for name in ("load", "loads", "Unpickler"):
            monkeypatch.setattr(pickle, name, refuse)
        assert _same_predictions(model, reg.load_keras("m"))


def test_code_in_a_lambda_layer_runs_only_when_the_caller_asks(path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda t: t * 2.0)])
    with ModelRegistry(path) as reg:
        reg.save_model("lam", model)
        with pytest.raises(errors.InvalidArgument, match="safe_mode"):
            reg.load_keras("lam")
        loaded = reg.load_keras("lam", safe_mode=False)
    assert np.allclose(np.asarray(loaded(X)), X * 2.0)


def test_a_flipped_byte_is_a_checksum_error_not_a_broken_model(path):
    model = _functional()
    with ModelRegistry(path) as reg:
        data = reg.load_model(reg.save_model("m", model).name)[0]
    raw = bytearray(Path(path).read_bytes())
    at = raw.find(data[-200:-168]) + 5  # inside the zip's stored bytes
    assert at > 5
    raw[at] ^= 0x01
    Path(path).write_bytes(bytes(raw))
    with ModelRegistry(path) as reg:
        with pytest.raises(synadb.ChecksumError):
            reg.load_keras("m")
        assert not reg.verify("m")


def test_what_is_not_a_keras_version_is_refused_clearly(path):
    torch = pytest.importorskip("torch")
    with ModelRegistry(path) as reg:
        reg.save_model("raw", b"not a zip")
        with pytest.raises(errors.InvalidArgument, match="not a Keras model"):
            reg.load_keras("raw")
        reg.save_model("t", {"w": torch.ones(2)})
        with pytest.raises(errors.InvalidArgument, match="load_torch"):
            reg.load_keras("t")
        with pytest.raises(errors.InvalidArgument, match="Keras model"):
            reg.save_model("layer", keras.layers.Dense(2))  # a layer is not a model
        assert reg.list_models() == ["raw", "t"]


@keras.saving.register_keras_serializable(package="synadb_tests")
class ScaledModel(keras.Model):
    """A subclassed model, defined outside Keras: found by its base class."""

    def __init__(self, factor=3.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor
        self.dense = keras.layers.Dense(2)

    def call(self, x):
        return self.dense(x) * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def test_subclassed_model_round_trip(path):
    model = ScaledModel(factor=2.5)
    model(X)  # build
    with ModelRegistry(path) as reg:
        assert reg.save_model("sub", model).format == "keras"
        loaded = reg.load_keras("sub")
    assert isinstance(loaded, ScaledModel) and loaded.factor == 2.5
    assert _same_predictions(model, loaded)


def test_works_without_importing_the_tensorflow_adapter(tmp_path):
    # The user imports keras and synadb, nothing else: the registry finds
    # the adapter's .keras converters itself (synadb/_convert.py).
    code = textwrap.dedent(f"""
        import os, sys
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
        import numpy as np
        import keras
        from synadb import ModelRegistry
        before = "synadb.integrations.tensorflow" in sys.modules
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        x = np.arange(6, dtype=np.float32).reshape(2, 3)
        with ModelRegistry({str(tmp_path / "m.db")!r}) as reg:
            v = reg.save_model("m", model)
            same = np.array_equal(reg.load_keras("m").predict(x, verbose=0),
                                  model.predict(x, verbose=0))
        print(before, v.format, same, "synadb.integrations.tensorflow" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": ROOT})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "keras", "True", "True"]
