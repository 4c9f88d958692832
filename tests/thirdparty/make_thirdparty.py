"""Write the third-party-style notebooks of this folder (outputs cleared).

They look like notebooks found in other projects rather than nbci's own:
every kernelspec form (`python3`, `python`, another case, an uninstalled
one, none), nbformat 3 and 4, papermill < 1.0's `record`/`display` outputs
and current scrapbook ones, magics, a failing import and a missing magic.
`EXPECTED` says how each one ends; test_thirdparty runs them with nbci and
with papermill and checks that both say so. Run `python
tests/thirdparty/make_thirdparty.py` after editing a notebook here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent / "notebooks"

PYTHON3 = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
LANGUAGE_INFO = {"name": "python", "version": "3.11.7", "file_extension": ".py"}

EXPECTED = {
    "kernel_python3": "ok",
    "kernel_python": "ok",
    "kernel_mixed_case": "ok",
    "kernel_uninstalled": "invalid",
    "kernel_missing": "invalid",
    "nbformat3": "ok",
    "nbformat3_no_kernelspec": "invalid",
    "record_era": "ok",
    "scrapbook_current": "ok",
    "magics": "ok",
    "missing_magic": "failed",
    "failing_import": "failed",
    "parameters_syntax_error": "failed",
}
"""Each notebook's status, the same from nbci and from papermill alone."""

PARAMETERS = {"greeting": "Hello"}
"""Given to every run of the collection (only magics.ipynb defines it)."""

GLUE_ACCURACY = "import scrapbook as sb\nsb.glue('accuracy', 0.75)"

PAPERMILL_0_SHIMS = """\
# papermill < 1.0 had pm.record / pm.display; this project kept them when upgrading.
from IPython.core.formatters import format_display_data
from IPython.display import display as _show

RECORD_MIME = "application/papermill.record+json"


def record(name, value):
    _show({RECORD_MIME: {name: value}}, raw=True)


def display(name, obj):
    data, metadata = format_display_data(obj)
    metadata["papermill"] = {"name": name}
    _show(data, metadata=metadata, raw=True)"""

RECORD_ERA_CELLS = [
    PAPERMILL_0_SHIMS,
    """\
record("accuracy", 0.875)
record("epochs", 30)
record("model", "logistic regression")
record("classes", ["cat", "dog"])
record("config", {"penalty": "l2", "C": 0.5})""",
    """\
%matplotlib inline
import matplotlib.pyplot as plt

figure, axes = plt.subplots(figsize=(2, 2))
axes.plot([0, 1, 2], [0, 1, 4])
display("curve", figure)
plt.close(figure)
display("f1", 0.5)""",
]

SCRAPBOOK_CELLS = [
    """\
import pandas as pd
import scrapbook as sb

sb.glue("accuracy", 0.93)
sb.glue("layers", [64, 32])
sb.glue("summary", "fits in memory")
frame = pd.DataFrame({"label": ["a", "b"], "tokens": [["foo", "bar"], ["baz"]]})
sb.glue("samples", frame, encoder="pandas")
sb.glue("shown", 3, display=True)""",
]

MAGIC_CELLS = [
    "%%time\ntotal = sum(range(10))",
    "!echo shell escapes work\n%env NBCI_THIRDPARTY=1\n%load_ext autoreload\n%autoreload 2",
    "import scrapbook as sb\nsb.glue('greeting', greeting)\nsb.glue('total', total)",
]


def code(source: str, **metadata: Any) -> dict[str, Any]:
    return {
        "cell_type": "code",
        "execution_count": None,
        "metadata": metadata,
        "outputs": [],
        "source": source.splitlines(keepends=True),
    }


def v4(cells: list[dict[str, Any]], kernelspec: dict[str, str] | None = PYTHON3) -> dict[str, Any]:
    metadata: dict[str, Any] = {"language_info": LANGUAGE_INFO}
    if kernelspec is not None:
        metadata["kernelspec"] = kernelspec
    return {"cells": cells, "metadata": metadata, "nbformat": 4, "nbformat_minor": 4}


def v3(sources: list[str], kernelspec: dict[str, str] | None) -> dict[str, Any]:
    """An IPython 2 era notebook: cells inside worksheets, `input` and `prompt_number`."""
    cells: list[dict[str, Any]] = [
        {
            "cell_type": "code",
            "collapsed": False,
            "input": source.splitlines(keepends=True),
            "language": "python",
            "metadata": {},
            "outputs": [],
            "prompt_number": None,
        }
        for source in sources
    ]
    metadata: dict[str, Any] = {"name": "", "signature": ""}
    if kernelspec is not None:
        metadata["kernelspec"] = kernelspec
    return {
        "metadata": metadata,
        "nbformat": 3,
        "nbformat_minor": 0,
        "worksheets": [{"cells": cells, "metadata": {}}],
    }


NOTEBOOKS: dict[str, dict[str, Any]] = {
    "kernel_python3": v4([code(GLUE_ACCURACY)]),
    "kernel_python": v4(
        [code(GLUE_ACCURACY)],
        {"name": "python", "display_name": "Python", "language": "python"},
    ),
    "kernel_mixed_case": v4(
        [code(GLUE_ACCURACY)],
        {"name": "Python3", "display_name": "Python 3", "language": "python"},
    ),
    "kernel_uninstalled": v4(
        [code(GLUE_ACCURACY)],
        {"name": "conda-env-ml-py", "display_name": "Python [conda env:ml]", "language": "python"},
    ),
    "kernel_missing": v4([code(GLUE_ACCURACY)], None),
    "nbformat3": v3(["x = 6 * 7", "import scrapbook as sb\nsb.glue('answer', x)"], PYTHON3),
    "nbformat3_no_kernelspec": v3(["x = 6 * 7"], None),
    "record_era": v4([code(source) for source in RECORD_ERA_CELLS]),
    "scrapbook_current": v4([code(source) for source in SCRAPBOOK_CELLS]),
    "magics": v4(
        [
            code('%matplotlib inline\ngreeting = "default"', tags=["parameters"]),
            *(code(source) for source in MAGIC_CELLS),
        ]
    ),
    "missing_magic": v4([code("x = 1"), code("%not_a_real_magic --fast\nx = 2")]),
    "failing_import": v4(
        [code("import os"), code("import definitely_not_installed_pkg as dn\ndn.run()")]
    ),
    "parameters_syntax_error": v4(
        [code("epochs = 10\nlr = (0.1", tags=["parameters"]), code("print(epochs)")]
    ),
}


def main() -> None:
    HERE.mkdir(exist_ok=True)
    for old in HERE.glob("*.ipynb"):
        old.unlink()
    for name, notebook in NOTEBOOKS.items():
        text = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
        (HERE / f"{name}.ipynb").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
