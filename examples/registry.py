"""The model registry: versions, stages, rollback and a checksum on every load.

    python examples/registry.py

Saves three versions of a model (a NumPy linear model as ``.npy`` bytes;
torch modules, Keras models and files are saved the same way), moves them
through the stages Development -> Staging -> Production, rolls Production
back after a bad release, finds versions by tag, compares two, and shows
that a flipped byte on disk is refused with ``ChecksumError`` instead of
being returned.

Needs only synadb.  Files go to ``./example-output/registry/`` (or
``$SYNADB_EXAMPLE_OUT``).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from synadb import ChecksumError, ModelRegistry

OUT = Path(os.environ.get("SYNADB_EXAMPLE_OUT", "example-output")).resolve() / "registry"
PATH = OUT / "models.db"


def fit(noise: float, seed: int) -> tuple[bytes, float]:
    """A least-squares model as .npy bytes, and its validation error."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, 5))
    w_true = np.arange(1.0, 6.0)
    y = x @ w_true + rng.normal(scale=noise, size=200)
    w = np.linalg.lstsq(x[:150], y[:150], rcond=None)[0]
    buf = io.BytesIO()
    np.save(buf, w)
    return buf.getvalue(), float(np.mean((x[150:] @ w - y[150:]) ** 2))


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    PATH.unlink(missing_ok=True)  # a re-run starts afresh
    with ModelRegistry(PATH) as registry:
        for noise, seed in ((2.0, 1), (0.5, 2), (5.0, 3)):
            data, mse = fit(noise, seed)
            mv = registry.save_model("linreg", data, {"val_mse": round(mse, 4), "noise": noise},
                                     tags={"team": "examples"})
            print(f"saved linreg v{mv.version}: val_mse {mse:.3f} ({mv.size_bytes} bytes, "
                  f"sha256 {mv.checksum[:12]}...) -> {mv.stage}")

        registry.set_stage("linreg", 1, "Production", user="ci", comment="first release")
        registry.set_stage("linreg", 2, "Staging")
        registry.set_stage("linreg", 2, "Production", user="ci", comment="lower val_mse")
        registry.set_stage("linreg", 3, "Production", user="alice", comment="hotfix")
        print(f"Production: v{registry.get_production('linreg').version} "
              "(promoting a version archives the previous one)")
        # v3 has the worst validation error: roll back to the previous Production version.
        registry.rollback("linreg", user="alice", comment="v3 regressed val_mse")
        prod = registry.get_production("linreg")
        print(f"after rollback: Production is v{prod.version}, val_mse "
              f"{prod.metadata['val_mse']}")
        print("stage history:")
        for ch in registry.stage_history("linreg"):
            print(f"  v{ch.version}: {ch.from_stage or '-':<11} -> {ch.to_stage:<11} "
                  f"{ch.user or '':<6} {ch.comment or ''}")

        diff = registry.compare("linreg", 2, 3)
        print(f"compare v2 and v3: {diff['metadata_changed']} changed: "
              + ", ".join(f"{k} {diff['metadata'][k][0]} -> {diff['metadata'][k][1]}"
                          for k in diff["metadata_changed"]))
        found = registry.find(tags={"team": "examples"}, stage="Production")
        print(f"find(tags team=examples, stage=Production): {[v.version for v in found]}")

        data, mv = registry.load_model("linreg", stage="Production")  # SHA-256 checked
        w = np.load(io.BytesIO(data))
        print(f"loaded v{mv.version}: weights {np.round(w, 2).tolist()}")
        victim = data

    # Damage one byte of the Production model on disk, as bit rot or a bad copy would.
    raw = bytearray(PATH.read_bytes())
    at = raw.find(victim)
    raw[at + len(victim) // 2] ^= 0xFF
    damaged = OUT / "models-damaged.db"
    damaged.write_bytes(raw)
    with ModelRegistry(damaged, read_only=True) as registry:
        try:
            registry.load_model("linreg", stage="Production")
        except ChecksumError as e:
            print(f"a copy with one flipped byte: load refused with ChecksumError ({e})")
        print(f"verify() on the damaged copy: {registry.verify('linreg')}")
    print("files:")
    print(f"  registry: {PATH}")
    print(f"  a damaged copy: {damaged}")
    print(f"next: synadb models {PATH}   or   synadb studio {PATH}")


if __name__ == "__main__":
    main()
