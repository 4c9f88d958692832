"""A forked kernel gives what a fresh one gives (issue 19), in real kernels.

Each test runs its notebooks twice, forked from pre-imported templates and
with `preload=False` (every kernel fresh), and compares the statuses and what
the notebooks glued. `FORKED` is glued first: whether a module the notebook
imports later was already imported, i.e. whether its kernel was forked (a
comparison of two fresh kernels would prove nothing).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import NotebookFactory

from nbci.execute import ExecuteOptions, execute_jobs
from nbci.execute.preload import modules_for
from nbci.model import Job, NotebookResult
from nbci.notebook_outputs import collect_outputs

ROOT = Path(__file__).resolve().parents[1]
GLUE = (
    "import json as _json, scrapbook as _sb\n"
    "def glue(name, value):\n"
    "    _sb.glue(name, _json.dumps(value), 'text')"
)
"""Glued as JSON text: compared as the notebook had them (numbers and lists are not drawn)."""


FORKED = "import sys\nFORKED = 'nbci_marker' in sys.modules"
"""The first cell: the notebook imports `nbci_marker` (installed by `site`) in its second."""


def run_both(
    jobs: Sequence[Job], project: Path, **options: Any
) -> dict[bool, dict[str, NotebookResult]]:
    """Every job forked (True) and fresh (False)."""
    runs = {}
    for preload in (True, False):
        settings = ExecuteOptions(
            root=project,
            out_dir=project / f"out-{preload}",
            preload=preload,
            after_notebook=collect_outputs,
            **options,
        )
        runs[preload] = {r.id: r for r in execute_jobs(jobs, settings)}
    return runs


def glued(result: NotebookResult) -> dict[str, Any]:
    return {name: json.loads(scrap.value) for name, scrap in result.scraps.items()}


def outputs(project: Path, result: NotebookResult, preload: bool) -> list[str]:
    """Each code cell's text outputs, as the executed notebook holds them: stdout's, then
    stderr's (how a kernel interleaves its two streams depends on when each is flushed)."""
    assert result.output is not None
    nb = json.loads((project / f"out-{preload}" / result.output).read_text())
    return [
        "".join(
            "".join(o.get("text", ""))
            for stream in ("stdout", "stderr")
            for o in cell.get("outputs", [])
            if o.get("name") == stream
        )
        for cell in nb["cells"]
        if cell["cell_type"] == "code"
    ]


def assert_same(runs: dict[bool, dict[str, NotebookResult]], *ids: str) -> None:
    for job_id in ids:
        forked, fresh = runs[True][job_id], runs[False][job_id]
        assert (forked.status, fresh.status) == ("ok", "ok"), (forked.error, fresh.error)
        forked_values, fresh_values = glued(forked), glued(fresh)
        assert forked_values.pop("forked") is True, job_id
        assert fresh_values.pop("forked") is False
        assert forked_values == fresh_values, job_id


def site(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, modules: dict[str, str] | None = None
) -> Path:
    """Modules installed outside the project (on PYTHONPATH, as site-packages would be)."""
    folder = tmp_path / "site"
    folder.mkdir(exist_ok=True)
    for name, source in {"nbci_marker": "", **(modules or {})}.items():
        (folder / f"{name}.py").write_text(source)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(folder), str(ROOT)]))
    return folder


# -- process pools with a module beside the notebook --------------------------------------

HELPERS = """\
def square(x):
    return x * x


def score(estimator, X, y):
    return float(estimator.score(X, y))
"""

POOLS = """\
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
import helpers
for method in ('spawn', 'forkserver', 'fork'):
    with mp.get_context(method).Pool(2) as pool:
        glue(method, pool.map(helpers.square, [1, 2, 3]))
with ProcessPoolExecutor(2, mp_context=mp.get_context('spawn')) as executor:
    glue('futures', list(executor.map(helpers.square, [4, 5])))
glue('loky', Parallel(n_jobs=2)(delayed(helpers.square)(i) for i in range(4)))
glue('multiprocessing_backend',
     Parallel(n_jobs=2, backend='multiprocessing')(delayed(helpers.square)(i) for i in range(3)))
X, y = load_iris(return_X_y=True)
scores = cross_val_score(LogisticRegression(max_iter=500), X, y, cv=3, n_jobs=2,
                         scoring=helpers.score)
glue('cross_val', [round(s, 6) for s in scores])
glue('authkey_len', len(mp.current_process().authkey))"""


@pytest.mark.kernel
def test_process_pools_find_a_module_beside_the_notebook(
    project: Path, notebook: NotebookFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site(tmp_path, monkeypatch)
    imports = (
        "import nbci_marker\n"
        "from joblib import Parallel, delayed\n"
        "from sklearn.datasets import load_iris\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "from sklearn.model_selection import cross_val_score"
    )
    notebook(
        "notebooks/pools.ipynb",
        [FORKED, imports, GLUE, "glue('forked', FORKED)", POOLS],
    )
    (project / "notebooks" / "helpers.py").write_text(HELPERS)

    runs = run_both([Job("pools", "notebooks/pools.ipynb", cell_timeout=120)], project)

    assert_same(runs, "pools")
    assert glued(runs[True]["pools"])["spawn"] == [1, 4, 9]


# -- what a notebook changes before its imports -------------------------------------------


@pytest.mark.kernel
def test_sys_path_and_environment_set_before_an_import_are_honoured(
    project: Path,
    notebook: NotebookFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`mypkg` 1.0 is installed; the project's `src/mypkg` is 2.0 and a notebook puts it first
    on sys.path. Environment variables set in a cell before an import are seen by it."""
    folder = site(tmp_path, monkeypatch, {"nbci_reads_env": ""})
    (folder / "nbci_reads_env.py").write_text(
        "import os\nSEEN = os.environ.get('NBCI_BEFORE_IMPORT')\n"
    )
    (folder / "mypkg").mkdir()
    (folder / "mypkg" / "__init__.py").write_text("VERSION = '1.0'\n")
    (project / "src" / "mypkg").mkdir(parents=True)
    (project / "src" / "mypkg" / "__init__.py").write_text("VERSION = '2.0'\n")
    path_cells = [
        FORKED,
        "import json, nbci_marker",
        GLUE,
        "glue('forked', FORKED)",
        "sys.path.insert(0, '../src')",
        "import mypkg\nglue('version', mypkg.VERSION)",
    ]
    env_cells = [
        FORKED,
        "import json, os, nbci_marker",
        GLUE,
        "glue('forked', FORKED)",
        "os.environ['NBCI_BEFORE_IMPORT'] = '1'\nos.environ['MPLBACKEND'] = 'Agg'",
        "import nbci_reads_env, matplotlib\n"
        "glue('seen', nbci_reads_env.SEEN)\nglue('backend', matplotlib.get_backend())",
    ]
    notebook("notebooks/path.ipynb", path_cells)
    notebook("notebooks/env.ipynb", env_cells)
    jobs = [Job("path", "notebooks/path.ipynb"), Job("env", "notebooks/env.ipynb")]

    runs = run_both(jobs, project)

    assert_same(runs, "path", "env")
    assert glued(runs[True]["path"])["version"] == "2.0"
    assert glued(runs[True]["env"])["seen"] == "1"
    assert glued(runs[True]["env"])["backend"].lower() == "agg"


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        (["import numpy", "import os\nos.environ['X'] = '1'", "import pandas"], ("numpy", "os")),
        (["import numpy\nimport sys\nsys.path.insert(0, 'x')\nimport pandas"], ("numpy", "sys")),
        (["%env X=1", "import numpy"], ()),
        (["%matplotlib inline\nimport numpy", "x = 1\nimport pandas"], ("numpy", "pandas")),
        (["import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot"], ("matplotlib",)),
        (["import helper, numpy"], ()),  # the project's own code may change what follows
        (["from . import sibling\nimport numpy"], ()),
        (["!pip install numpy==1.0", "import numpy"], ()),
        (["from dotenv import load_dotenv\nload_dotenv()\nimport numpy"], ("dotenv",)),
    ],
)
def test_only_imports_before_anything_that_could_change_them_are_preloaded(
    project: Path, notebook: NotebookFactory, cells: list[str], expected: tuple[str, ...]
) -> None:
    path = notebook("notebooks/a.ipynb", cells)
    (project / "notebooks" / "helper.py").write_text("")
    assert modules_for(path, [path.parent]) == expected


# -- randomness ---------------------------------------------------------------------------

DRAWS = """\
import multiprocessing as mp
import numpy as np
glue('random', random.random())
glue('numpy', float(np.random.rand()))
glue('own_rng', nbci_rng.RNG.random())
glue('fixed_rng', nbci_rng.FIXED.random())
glue('authkey', bytes(mp.current_process().authkey).hex())
if 'torch' in sys.modules:  # skipped where torch is not installed
    glue('torch', torch.rand(3).tolist())
    glue('torch_forked', FORKED)
else:
    glue('torch', None)"""


@pytest.mark.kernel
def test_generators_seeded_at_import_are_reseeded_per_kernel(
    project: Path,
    notebook: NotebookFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    site(
        tmp_path,
        monkeypatch,
        {"nbci_rng": "import random\nRNG = random.Random()\nFIXED = random.Random(7)\n"},
    )
    cells = [
        FORKED,
        "import random, nbci_marker, nbci_rng\n"
        "try:\n    import torch\nexcept ImportError:\n    pass",
        GLUE,
        "glue('forked', FORKED)",
        DRAWS,
    ]
    notebook("notebooks/a.ipynb", cells)
    notebook("notebooks/b.ipynb", cells)
    jobs = [Job("a", "notebooks/a.ipynb"), Job("b", "notebooks/b.ipynb")]

    runs = run_both(jobs, project, workers=1)

    for preload, results in runs.items():
        a, b = glued(results["a"]), glued(results["b"])
        assert a["forked"] is b["forked"] is preload
        assert a["fixed_rng"] == b["fixed_rng"] == glued(runs[not preload]["a"])["fixed_rng"]
        for drawn in ("random", "numpy", "own_rng", "authkey"):
            assert a[drawn] != b[drawn], (preload, drawn)
        if a["torch"] is not None:
            assert a["torch"] != b["torch"]


@pytest.mark.kernel
def test_a_fixed_hash_seed_and_stdin_are_a_fresh_kernels(
    project: Path, notebook: NotebookFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site(tmp_path, monkeypatch)
    monkeypatch.setenv("PYTHONHASHSEED", "7")
    cells = [
        FORKED,
        "import os, stat, select, nbci_marker",
        GLUE,
        "glue('forked', FORKED)",
        "glue('hash', hash('abc'))\n"
        "glue('set_order', list({'a', 'b', 'c', 'd', 'e'}))\n"
        "glue('stdin_is_pipe', stat.S_ISFIFO(os.fstat(0).st_mode))\n"
        "glue('stdin_readable', bool(select.select([0], [], [], 0.1)[0]))",
    ]
    notebook("notebooks/a.ipynb", cells)

    assert_same(run_both([Job("a", "notebooks/a.ipynb")], project), "a")


# -- output at import, display settings, environment set by imports ----------------------

NOISY = """\
import os, sys, warnings
print('hello from an import')
print('to stderr', file=sys.stderr)
warnings.warn('careful', UserWarning)
warnings.warn('old', DeprecationWarning, stacklevel=2)
os.environ['NBCI_SET_AT_IMPORT'] = 'kept'
"""


@pytest.mark.kernel
def test_what_an_import_prints_warns_and_decides_is_a_fresh_kernels(
    project: Path,
    notebook: NotebookFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Also without PYTHONUNBUFFERED: the template's answers do not share its stdout."""
    site(tmp_path, monkeypatch, {"nbci_noisy": NOISY})
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)
    cells = [
        FORKED,
        "import nbci_marker, nbci_noisy\nimport pandas as pd",
        GLUE,
        "glue('forked', FORKED)\n"
        "import os\n"
        "glue('max_columns', pd.get_option('display.max_columns'))\n"
        "glue('width', pd.get_option('display.width'))\n"
        "glue('set_at_import', os.environ.get('NBCI_SET_AT_IMPORT'))\n"
        "print(pd.DataFrame([[i * j for i in range(30)] for j in range(3)]))",
    ]
    notebook("notebooks/a.ipynb", cells)

    runs = run_both([Job("a", "notebooks/a.ipynb")], project)

    assert_same(runs, "a")
    forked, fresh = (
        [re.sub(r"ipykernel_\d+/\d+", "CELL", text) for text in outputs(project, runs[p]["a"], p)]
        for p in (True, False)
    )
    assert forked == fresh
    assert "hello from an import" in forked[1] and "careful" in forked[1]
    assert glued(runs[True]["a"])["set_at_import"] == "kept"


# -- a notebook carries only its own imports; unsafe modules cost only their notebook --------


@pytest.mark.kernel
def test_each_notebook_carries_only_what_it_imports(
    project: Path,
    notebook: NotebookFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One notebook imports scikit-learn and a module that asks IPython for its shell (as
    tqdm.auto and ipywidgets do); the other only json: it has no scikit-learn, and is forked."""
    site(tmp_path, monkeypatch, {"nbci_asks": "import IPython\nSHELL = IPython.get_ipython()\n"})
    heavy = [
        FORKED,
        "import sklearn, warnings, nbci_marker\nimport nbci_asks\nimport numpy",
        GLUE,
        "glue('forked', FORKED)\nglue('shell', nbci_asks.SHELL is not None)\n"
        "glue('numpy_before', 'numpy' in sys.modules)",
    ]
    light = [
        FORKED,
        "import json, nbci_marker",
        GLUE,
        "glue('forked', FORKED)\n"
        "glue('sklearn', 'sklearn' in sys.modules)\n"
        "import warnings\nglue('filters', len(warnings.filters))",
    ]
    notebook("notebooks/heavy.ipynb", heavy)
    notebook("notebooks/light.ipynb", light)
    jobs = [Job("heavy", "notebooks/heavy.ipynb"), Job("light", "notebooks/light.ipynb")]

    runs = run_both(jobs, project, workers=1)

    assert_same(runs, "heavy", "light")
    assert glued(runs[True]["light"])["sklearn"] is False
    assert glued(runs[True]["heavy"])["shell"] is True
    assert not any(runs[True][job].notes for job in ("heavy", "light"))


@pytest.mark.kernel
def test_a_notebook_importing_every_unsafe_module_leaves_the_others_forked(
    project: Path,
    notebook: NotebookFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One notebook imports tqdm.auto, tqdm.notebook, tqdm.autonotebook and seaborn (each
    made a template restart, and after the third no kernel of the run was forked); the
    numpy and scikit-learn notebooks before and after it are still forked."""
    pytest.importorskip("seaborn", reason="seaborn is not installed")
    pytest.importorskip("ipywidgets", reason="ipywidgets is not installed (tqdm.notebook)")
    site(tmp_path, monkeypatch)
    unsafe = [
        FORKED,
        "import nbci_marker, numpy as np\nimport tqdm.auto\nimport tqdm.notebook\n"
        "import tqdm.autonotebook\nimport seaborn as sns",
        GLUE,
        "glue('forked', FORKED)\n"
        "glue('bars', [tqdm.auto.tqdm.__module__, tqdm.autonotebook.tqdm.__module__])\n"
        "glue('total', sum(tqdm.auto.tqdm(range(10))))\n"
        "glue('seaborn', sns.__version__)\nglue('numpy', np.__version__)",
    ]
    sklearn = [
        FORKED,
        "import nbci_marker, numpy as np\nfrom sklearn.linear_model import LinearRegression",
        GLUE,
        "glue('forked', FORKED)\nX = np.arange(8.0).reshape(-1, 1)\n"
        "glue('coef', round(float(LinearRegression().fit(X, 3 * X[:, 0]).coef_[0]), 6))\n"
        "glue('tqdm', 'tqdm' in sys.modules)",
    ]
    plain = [
        FORKED,
        "import nbci_marker, numpy as np",
        GLUE,
        "glue('forked', FORKED)\nglue('sum', int(np.arange(10).sum()))\n"
        "glue('seaborn', 'seaborn' in sys.modules)",
    ]
    notebook("notebooks/a_numpy.ipynb", plain)
    notebook("notebooks/b_unsafe.ipynb", unsafe)
    notebook("notebooks/c_sklearn.ipynb", sklearn)
    notebook("notebooks/d_numpy.ipynb", plain)
    notebook("notebooks/e_sklearn.ipynb", sklearn)
    ids = ["a_numpy", "b_unsafe", "c_sklearn", "d_numpy", "e_sklearn"]
    jobs = [Job(name, f"notebooks/{name}.ipynb", cell_timeout=120) for name in ids]

    runs = run_both(jobs, project, workers=1)

    assert_same(runs, *ids)
    assert glued(runs[True]["b_unsafe"])["total"] == 45
    assert glued(runs[True]["c_sklearn"])["tqdm"] is False
    assert glued(runs[True]["d_numpy"])["seaborn"] is False
