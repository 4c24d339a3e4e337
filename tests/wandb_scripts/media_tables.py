"""Tables, images, histograms and custom charts, as W&B's media guides log them."""

import numpy as np

import synadb.integrations.wandb as wandb  # was: import wandb

rng = np.random.default_rng(0)

with wandb.init(project="media", name="predictions") as run:
    # A predictions table with an image per row.
    table = wandb.Table(columns=["id", "image", "guess", "truth"])
    for i in range(5):
        pixels = rng.integers(0, 255, size=(8, 8, 3), dtype=np.uint8)
        table.add_data(i, wandb.Image(pixels, caption=f"sample {i}"), int(i % 3), int(i % 2))
    table.add_column("score", [0.9, 0.8, 0.7, 0.6, 0.5])
    run.log({"predictions": table})

    # Images: a float array, a list of them, and a matplotlib figure.
    run.log({"examples": [wandb.Image(rng.random((16, 16)), caption=f"noise {k}")
                          for k in range(3)]})
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [1, 4, 9])
    run.log({"chart_image": wandb.Image(fig, caption="squares")})
    plt.close(fig)

    # Histograms over steps: a sequence, and numpy's own histogram.
    for step in range(3):
        weights = rng.normal(loc=step, scale=1.0, size=1000)
        run.log({"weights": wandb.Histogram(weights, num_bins=32),
                 "grads": wandb.Histogram(np_histogram=np.histogram(weights / 10, bins=16)),
                 "loss": 1.0 / (step + 1)})

    # Custom charts over a table.
    data = [[x, x * x] for x in range(10)]
    curve = wandb.Table(data=data, columns=["x", "y"])
    run.log({
        "curve": wandb.plot.line(curve, "x", "y", title="y = x^2"),
        "points": wandb.plot.scatter(curve, "x", "y", title="scatter"),
        "bars": wandb.plot.bar(wandb.Table(data=[["a", 3], ["b", 5]],
                                           columns=["label", "value"]),
                               "label", "value", title="counts"),
    })
