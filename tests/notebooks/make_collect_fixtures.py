"""Write the fixture notebooks `collect_*.ipynb` used by test_collect and test_glue.

Run `python tests/notebooks/make_collect_fixtures.py` after editing a cell here;
the notebooks are committed with outputs cleared.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

HERE = Path(__file__).parent

# Glued with scrapbook itself and with raw displays: what nbci must read
# although nbci.glue did not write it.
SCRAPBOOK_CELLS = [
    """\
import base64

import matplotlib.pyplot as plt  # the kernel's default inline backend
import numpy as np
import pandas as pd
import scrapbook as sb
from IPython.display import HTML, SVG, display


def raw_display(name, bundle):
    marker = {"scrapbook": {"name": name, "data": False, "display": True}}
    display(bundle, raw=True, metadata=marker)""",
    """\
sb.glue("accuracy", 0.93)
sb.glue("epochs", 12)
sb.glue("converged", True)
sb.glue("loss", float("nan"))  # the kernel's serializer stores null
sb.glue("scores", {"f1": 0.8, "per_class": {"a": 1, "b": 0.5}})
sb.glue("mixed", {"f1": 0.8, "label": "best"})
sb.glue("layers", [64, 32, 10])
sb.glue("notes", "trained on\\ndigits")
sb.glue("big_text", "x" * 150_000)
sb.glue("shown", 3, display=True)  # a data scrap and its display: the data wins
sb.glue("np_display", np.float64(0.25), encoder="display")  # only its repr survives
sb.glue("frame", pd.DataFrame({"x": range(1500), "y": ["a"] * 1500}))  # scrapbook's parquet""",
    """\
fig, ax = plt.subplots(figsize=(2, 2))
ax.plot([1, 3, 2])
sb.glue("inline_fig", fig, encoder="display")
sb.glue("../../escape", fig, encoder="display")
sb.glue("a/b/c", fig, encoder="display")
plt.close(fig)
svg = '<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"><rect width="5" height="5"/>'
svg += "</svg>"
sb.glue("diagram", SVG(svg), encoder="display")
sb.glue("banner", HTML("<b>hi</b>"), encoder="display")
raw_display("html_only", {"text/html": "<i>only html</i><script>alert(1)</script>"})
raw_display("plain_only", {"text/plain": "just some text"})
raw_display("broken_png", {"image/png": base64.b64encode(b"not a png at all").decode()})""",
]

# nbci.glue under the Agg backend, with numpy, pandas and odd values.
GLUE_CELLS = [
    """\
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import nbci""",
    """\
nbci.glue("n_int", np.int64(7))
nbci.glue("f32", np.float32(0.5))
nbci.glue("flag", np.bool_(True))
nbci.glue("zero_d", np.array(0.75))
nbci.glue("nan_metric", np.float64("nan"))
nbci.glue("inf_metric", float("-inf"))
nbci.glue("scores", {"f1": np.float32(0.25), "per_class": {3: np.int64(4)}, "nan": np.nan})
nbci.glue("vector", np.arange(3))
nbci.glue("summary", "all good")
nbci.glue("shown", 0.5, display=True)
nbci.glue("nothing", None)
nbci.glue("when", pd.Timestamp("2026-01-02"))""",
    """\
per_class = pd.DataFrame(
    {"precision": [0.9, 1.0], "support": np.array([10, 12])},
    index=pd.Index(["cat", "dog"], name="label"),
)
nbci.glue("per_class", per_class)
x = np.arange(1500)
nbci.glue("long_table", pd.DataFrame({"x": x, "y": np.where(x % 2, np.nan, 1.0)}))""",
    """\
fig, ax = plt.subplots(figsize=(2, 2))
ax.plot([1, 2, 3])
nbci.glue("curve", fig)
nbci.glue("curve_axes", ax)
plt.close(fig)""",
    """\
# Curves: a Keras-like history, a pandas Series, a DataFrame as series, a long one with gaps.
nbci.glue("history", {"loss": [1.0, 0.5, 0.25], "val_loss": np.array([1.2, 0.8, 0.9])})
nbci.glue("lr", pd.Series([0.1, 0.01, 0.001], index=[0, 10, 20]))
nbci.glue("frame", pd.DataFrame({"acc": [0.5, 0.7], "name": ["a", "b"]}), kind="series")
long = np.sin(np.arange(10_000) / 100.0)
long[5000:5100] = np.nan
nbci.glue("long", long)
nbci.glue("words", ["a", 1])""",
]


def notebook(cells: list[str]) -> nbformat.NotebookNode:
    nb: nbformat.NotebookNode = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    for index, cell in enumerate(nb.cells):
        cell.id = f"cell-{index}"  # stable ids keep the committed files stable
    return nb


def main() -> None:
    for name, cells in (("collect_scrapbook", SCRAPBOOK_CELLS), ("collect_glue", GLUE_CELLS)):
        nb = notebook(cells)
        nbformat.validate(nb)
        nbformat.write(nb, HERE / f"{name}.ipynb")


if __name__ == "__main__":
    main()
