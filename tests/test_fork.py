"""Kernels forked from a pre-imported template (issue 11), in real kernels.

Every notebook here writes a record (a JSON file) of what its kernel saw;
`forked` says whether numpy was already imported before the notebook's own
`import numpy`, that is whether the kernel came from the template.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from conftest import NotebookFactory
from fork_drivers import driver
from fresh_python import run_script
from processes import assert_all_gone

from nbci.config import parse_config
from nbci.errors import ConfigError
from nbci.execute import ExecuteOptions, execute_jobs
from nbci.execute.fork_server import KERNEL_MACHINERY
from nbci.execute.preload import modules_for
from nbci.model import Job, NotebookResult
from nbci.notebook_outputs import collect_outputs

ROOT = Path(__file__).resolve().parents[1]
START = "import sys\nrecord = {'forked': 'numpy' in sys.modules, 'pid': __import__('os').getpid()}"


def save(record_file: Path) -> str:
    return f"import json\nopen({str(record_file)!r}, 'w').write(json.dumps(record))"


def run(jobs: list[Job], project: Path, **options: Any) -> dict[str, NotebookResult]:
    settings = ExecuteOptions(
        root=project, out_dir=project / "nbci-out", after_notebook=collect_outputs, **options
    )
    results = {r.id: r for r in execute_jobs(jobs, settings)}
    assert sorted(results) == sorted(j.id for j in jobs)
    return results


def read(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def nbci(args: list[str], project: Path) -> subprocess.CompletedProcess[str]:
    """`nbci ARGS` in `project`, with this checkout first on PYTHONPATH (kernels too)."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "nbci", *args],
        cwd=project,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=300,
    )


def fallbacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "start normally" in r.getMessage()]


# -- isolation ----------------------------------------------------------------------

MESS = """\
import os, random
import matplotlib.pyplot as plt
import numpy as np
record['draws'] = [np.random.rand(), random.random()]
LEAK = 1
np.nbci_patched = True
os.environ['NBCI_LEAK'] = '1'
os.chdir('/')
sys.path.insert(0, '/nbci-leak')
np.random.seed(1)
random.seed(1)
plt.rcParams['lines.linewidth'] = 9.0
plt.figure()"""

LOOK = """\
import os, random
import matplotlib.pyplot as plt
import numpy as np
record['draws'] = [np.random.rand(), random.random()]
record['leak'] = 'LEAK' in globals()
record['patched'] = hasattr(np, 'nbci_patched')
record['env'] = os.environ.get('NBCI_LEAK')
record['threads'] = os.environ.get('OMP_NUM_THREADS')
record['cwd'] = os.getcwd()
record['path'] = '/nbci-leak' in sys.path
record['linewidth'] = plt.rcParams['lines.linewidth']
record['figures'] = plt.get_fignums()"""


@pytest.mark.kernel
def test_nothing_one_notebook_does_is_seen_by_the_next(
    project: Path, notebook: NotebookFactory, tmp_path: Path
) -> None:
    mess, look, again = (tmp_path / f"{name}.json" for name in ("mess", "look", "again"))
    notebook("notebooks/mess.ipynb", [START, MESS, save(mess)])
    notebook("notebooks/look.ipynb", [START, LOOK, save(look)])
    notebook("notebooks/again.ipynb", [START, LOOK, save(again)])
    jobs = [Job(name, f"notebooks/{name}.ipynb") for name in ("mess", "look", "again")]

    results = run(jobs, project, workers=1)

    assert {r.status for r in results.values()} == {"ok"}
    first, second, third = read(mess), read(look), read(again)
    assert first["forked"] and second["forked"] and third["forked"]
    assert (second["leak"], second["patched"], second["env"], second["path"]) == (
        False,
        False,
        None,
        False,
    )
    assert second["cwd"] == str((project / "notebooks").resolve())
    assert second["linewidth"] != 9.0 and second["figures"] == []
    cores = str(os.cpu_count() or 1)  # one worker: its share of the cores is all of them
    assert second["threads"] == os.environ.get("OMP_NUM_THREADS", cores)
    seeded = [0.417022004702574, 0.13436424411240122]  # numpy and random after seed(1)
    draws = [first["draws"], second["draws"], third["draws"]]
    assert all(draw != seeded for draw in draws)
    # each fork reseeds numpy's and random's generators: no two kernels draw the same
    assert len({d[0] for d in draws}) == 3 and len({d[1] for d in draws}) == 3


# -- a fresh kernel's look -------------------------------------------------------------

FRESH_LOOK = """\
import gc, os, threading
import numpy
import sibling
from pkg import relative
record['name'] = __name__
record['main'] = sys.modules['__main__'].__dict__ is globals()
record['argv'] = [a for a in sys.argv[1:] if not a.endswith('.json')]
record['argv0'] = os.path.basename(sys.argv[0])
record['orig_argv'] = [a for a in sys.orig_argv if not a.endswith('.json')]
record['cwd'] = os.getcwd()
record['path'] = sys.path
import multiprocessing.process  # its ORIGINAL_DIR: where spawn workers look for modules
record['original_dir'] = multiprocessing.process.ORIGINAL_DIR
record['shell'] = type(get_ipython()).__name__
record['imports'] = [sibling.VALUE, relative.VALUE]
record['ppid_is_worker'] = os.getppid() == int(os.environ['JPY_PARENT_PID'])
record['session_leader'] = os.getsid(0) == os.getpid()
record['stdout'] = type(sys.stdout).__name__
record['nbci_preloaded'] = [n for n in sys.modules if n.partition('.')[0] == 'nbci']
record['frozen'] = gc.get_freeze_count() > 0
cycle = []
cycle.append(cycle)
del cycle
record['collects_cycles'] = gc.isenabled() and gc.collect() > 0"""
MACHINERY_LOOK = f"""\
record['machinery_missing'] = [m for m in {list(KERNEL_MACHINERY)!r} if m not in sys.modules]"""


@pytest.mark.kernel
def test_a_forked_kernel_looks_like_a_fresh_one(
    project: Path, notebook: NotebookFactory, tmp_path: Path
) -> None:
    folder = project / "notebooks"
    cells = [START, FRESH_LOOK, MACHINERY_LOOK, save(tmp_path / "look.json")]
    notebook("notebooks/look.ipynb", cells)
    (folder / "sibling.py").write_text("VALUE = 'beside'\n")
    (folder / "pkg").mkdir()
    (folder / "pkg" / "__init__.py").write_text("")
    (folder / "pkg" / "helper.py").write_text("VALUE = 'relative'\n")
    (folder / "pkg" / "relative.py").write_text("from .helper import VALUE\n")
    jobs = [Job("look", "notebooks/look.ipynb")]

    records = {}
    for preload in (False, True):
        assert run(jobs, project, workers=1, preload=preload)["look"].status == "ok"
        records[preload] = read(tmp_path / "look.json")

    fresh, forked = records[False], records[True]
    assert (fresh.pop("forked"), forked.pop("forked")) == (False, True)
    # What the template imported is out of the kernel's collections (its own objects are not).
    assert (fresh.pop("frozen"), forked.pop("frozen")) == (False, True)
    fresh.pop("pid"), forked.pop("pid")
    # Issue 21: a forked kernel's parent is its nanny; JPY_PARENT_PID still names the worker.
    assert (fresh.pop("ppid_is_worker"), forked.pop("ppid_is_worker")) == (True, False)
    assert forked == fresh
    assert forked["name"] == "__main__" and forked["main"] and forked["shell"] != "NoneType"
    assert forked["imports"] == ["beside", "relative"]
    assert forked["collects_cycles"]
    assert forked["nbci_preloaded"] == []
    # What the base template pre-imports, a fresh kernel has imported before the first cell.
    assert fresh["machinery_missing"] == []


@pytest.mark.kernel
@pytest.mark.tools
def test_a_local_module_edited_between_two_runs_is_seen(
    project: Path, notebook: NotebookFactory, tmp_path: Path
) -> None:
    """`nbci run --no-cache` twice; `helper.py` beside the notebook changes in between."""
    record = tmp_path / "helper.json"
    cells = [START, "import numpy, helper\nrecord['value'] = helper.VALUE", save(record)]
    path = notebook("notebooks/uses_helper.ipynb", cells)
    helper = project / "notebooks" / "helper.py"
    seen = []
    for value in ("first", "second"):
        helper.write_text(f"VALUE = {value!r}\n")
        done = nbci(["run", "--no-cache"], project)
        assert done.returncode == 0, done.stderr
        seen.append(read(record))

    assert [r["value"] for r in seen] == ["first", "second"]
    assert all(r["forked"] for r in seen)
    # numpy only: the project's own `helper` may change what is imported after it (issue 19)
    assert modules_for(path, [path.parent]) == ("sys", "numpy")


MAKE_LATE = """\
record = {}
record['forked'] = FORKED
import os
def create(folder, name, mtime_ns):
    with open(os.path.join(folder, name + '.py'), 'w') as module:
        module.write(f'VALUE = {name!r}\\n')
    os.utime(folder, ns=(mtime_ns, mtime_ns))  # the folder's time as the template saw it
create(SITE, 'late_site', SITE_NS)
create(LOCAL, 'late_local', LOCAL_NS)"""

USE_LATE = """\
record = {}
record['forked'] = FORKED
import late_local, late_site
record['values'] = [late_local.VALUE, late_site.VALUE]"""


@pytest.mark.kernel
def test_a_module_created_after_the_template_listed_its_folder_is_found(
    project: Path, notebook: NotebookFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The templates keep the import system's folder listings that every kernel may trust
    (`fork_server._settle_import_caches`). A listing is made again when its folder's time
    changes; here the first notebook creates a module in two folders on `sys.path` and puts
    back each folder's time, as if within the same tick of the file clock as the template's
    listing, and the second notebook, forked from the same template, imports them: the
    notebooks' own folder (always listed again: a project's folder, even with an old time)
    and an installed folder whose time is not older than the template."""
    site, local = tmp_path / "site", project / "notebooks"
    site.mkdir()
    (site / "nbci_marker.py").write_text("")
    now = time.time_ns()
    times = {site: now + 600 * 10**9, local: now - 3600 * 10**9}  # racy; settled but ours
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(local), str(site), str(ROOT)]))
    forked = "import sys\nFORKED = 'nbci_marker' in sys.modules"
    names = f"SITE, SITE_NS, LOCAL, LOCAL_NS = {str(site)!r}, {times[site]}, {str(local)!r}, "
    names += f"{times[local]}"
    notebook("notebooks/make.ipynb", [forked, "import nbci_marker", names, MAKE_LATE])
    record = tmp_path / "use.json"
    notebook("notebooks/use.ipynb", [forked, "import nbci_marker", USE_LATE, save(record)])
    for folder, mtime_ns in times.items():
        os.utime(folder, ns=(mtime_ns, mtime_ns))
    jobs = [Job("make", "notebooks/make.ipynb"), Job("use", "notebooks/use.ipynb")]

    results = run(jobs, project, workers=1, warm_kernels=False)  # `use`'s starts after `make`

    assert results["make"].status == "ok", results["make"].error
    assert results["use"].status == "ok", results["use"].error
    assert read(record) == {"forked": True, "values": ["late_local", "late_site"]}


def test_the_templates_keep_only_the_folder_listings_a_kernel_may_trust(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from importlib.machinery import FileFinder

    from nbci.execute.fork_server import _settle_import_caches, _State

    project, installed = tmp_path / "project", tmp_path / "site-packages"
    started = time.time()
    listed: dict[str, float] = {
        str(installed / "settled"): started - 60,
        str(installed / "not_yet_listed"): -1,
        str(installed / "racy"): started - 1,  # within the file clock's coarseness of the start
        str(project / "src"): started - 60,  # the project's, however old
    }
    cache: dict[str, Any] = {}
    for path, mtime in listed.items():
        Path(path).mkdir(parents=True)
        cache[path] = FileFinder(path)
        cache[path]._path_mtime = mtime
    cache["relative"] = FileFinder("relative")  # the kernel runs elsewhere
    cache[str(tmp_path / "missing")] = None  # it may appear
    cache[str(tmp_path / "archive.zip")] = object()  # another kind of finder
    monkeypatch.setattr(sys, "path_importer_cache", cache)
    state = _State([], {}, project.resolve(), [project.resolve()], started=started)

    _settle_import_caches(state)

    assert sorted(cache) == [str(installed / "not_yet_listed"), str(installed / "settled")]


@pytest.mark.kernel
def test_a_notebook_importing_nbci_gets_its_own(
    project: Path, notebook: NotebookFactory, tmp_path: Path
) -> None:
    """The set template imports `nbci.vocabulary` (not the base's), the kernel leaves nbci's
    modules out of `sys.modules`, and the notebook imports them again, whole."""
    record = tmp_path / "nbci.json"
    use = "import numpy, nbci.vocabulary\nrecord['module'] = nbci.vocabulary.__name__"
    notebook("notebooks/uses_nbci.ipynb", [START, use, save(record)])

    results = run([Job("uses_nbci", "notebooks/uses_nbci.ipynb")], project, workers=1)

    assert results["uses_nbci"].status == "ok", results["uses_nbci"].error
    assert (read(record)["forked"], read(record)["module"]) == (True, "nbci.vocabulary")


# -- falling back to a normal start ------------------------------------------------------


@pytest.mark.kernel
def test_kernels_the_template_cannot_give_start_normally(
    project: Path,
    notebook: NotebookFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A kernelspec with its own argv, or with environment variables of its own (modules may
    read them on import), starts normally, said once for the whole run; a module that raises
    on import, one that starts a thread and one that asks IPython for its shell while
    imported are not pre-imported, and the others still are."""
    launcher = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    specs: dict[str, dict[str, Any]] = {
        "flagged": {"argv": [launcher[0], "-X", "utf8", *launcher[1:]]},
        "with-env": {"argv": launcher, "env": {"NBCI_SPEC_VARIABLE": "1"}},
    }
    for name, spec in specs.items():
        folder = tmp_path / "jupyter" / "kernels" / name
        folder.mkdir(parents=True)
        spec |= {"display_name": name, "language": "python"}
        (folder / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    modules = tmp_path / "site"
    modules.mkdir()
    (modules / "nbci_raises.py").write_text("raise RuntimeError('no')\n")
    (modules / "nbci_thread.py").write_text(
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
    )
    (modules / "nbci_asks.py").write_text("import IPython\nSHELL = IPython.get_ipython()\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(modules), str(ROOT)]))
    cells = [
        START,
        "import numpy, nbci_asks, nbci_thread\nrecord['shell'] = nbci_asks.SHELL is not None",
    ]
    jobs = []
    kernel_of = {"plain": None, "flagged-1": "flagged", "flagged-2": "flagged"}
    for name, kernel in {**kernel_of, "with-env": "with-env"}.items():
        notebook(f"notebooks/{name}.ipynb", [*cells, save(tmp_path / f"{name}.json")])
        jobs.append(Job(name, f"notebooks/{name}.ipynb", kernel=kernel))
    # What follows an unsafe module is not pre-imported either (issue 19): a notebook of its own.
    notebook("notebooks/thread.ipynb", [START, "import numpy, nbci_thread"])
    jobs.append(Job("thread", "notebooks/thread.ipynb"))
    caplog.set_level(logging.INFO, logger="nbci")
    extra = ("nbci_raises", "nbci_thread", "nbci_asks")

    results = run(jobs, project, workers=2, preload_modules=extra)

    assert {r.status for r in results.values()} == {"ok"}
    plain, flagged = read(tmp_path / "plain.json"), read(tmp_path / "flagged-1.json")
    assert plain["forked"] and plain["shell"]  # imported in the kernel: it found the shell
    assert not flagged["forked"] and not read(tmp_path / "flagged-2.json")["forked"]
    assert not read(tmp_path / "with-env.json")["forked"]
    said = "some kernels start normally, without pre-imported modules: "
    assert sorted(fallbacks(caplog)) == [
        said + "the kernelspec's argv is not `python -m ipykernel_launcher …`",
        said + "the template failed (the kernel's environment differs from the template's: "
        "NBCI_SPEC_VARIABLE)",
    ]
    dropped = [r.getMessage() for r in caplog.records if "not pre-importing" in r.getMessage()]
    assert sorted(dropped) == [
        "not pre-importing nbci_asks: it asks IPython for its shell while it is imported",
        "not pre-importing nbci_thread: a thread is running after its import",
    ]


@pytest.mark.kernel
def test_a_template_that_cannot_start_or_dies_means_normal_starts(
    project: Path,
    notebook: NotebookFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    modules = tmp_path / "site"
    modules.mkdir()
    (modules / "nbci_exits.py").write_text("import os\nos._exit(7)\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(modules), str(ROOT)]))
    caplog.set_level(logging.INFO, logger="nbci")
    # Issue 19: a template dies importing one notebook's modules: only that notebook starts
    # fresh, said without -v and in its notes; the other is still forked.
    exits = [START, "import numpy\ndef later():\n    import nbci_exits", save(tmp_path / "a.json")]
    notebook("notebooks/a.ipynb", exits)
    notebook("notebooks/b.ipynb", [START, "import numpy", save(tmp_path / "b.json")])
    jobs = [Job("a", "notebooks/a.ipynb"), Job("b", "notebooks/b.ipynb")]

    results = run(jobs, project, workers=1, preload_modules=("nbci_exits",))

    assert results["a"].status == results["b"].status == "ok"
    assert not read(tmp_path / "a.json")["forked"] and read(tmp_path / "b.json")["forked"]
    said = "its kernel started fresh, without pre-imported modules: the template of its imports "
    assert [note.startswith(said) for note in results["a"].notes] == [True]
    assert not results["b"].notes and not fallbacks(caplog)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [message.startswith(f"a: {said}") for message in warned] == [True]

    caplog.clear()
    notebook("notebooks/a.ipynb", [START, save(tmp_path / "a.json")])
    kill_template = (  # the run's base template: the last of the kernel's ancestors running it
        "import psutil\n"
        "p = psutil.Process(os.getppid())  # the kernel's nanny, forked from its set template\n"
        "while 'fork_server' in ' '.join(p.parent().cmdline()):\n"
        "    p = p.parent()\n"
        "p.kill()"
    )
    notebook("notebooks/kill.ipynb", [START, "import os", kill_template])
    jobs = [Job("kill", "notebooks/kill.ipynb"), Job("a", "notebooks/a.ipynb")]

    results = run(jobs, project, workers=1, warm_kernels=False)

    assert results["kill"].status == results["a"].status == "ok"
    assert not read(tmp_path / "a.json")["forked"]
    assert fallbacks(caplog) == [
        "some kernels start normally, without pre-imported modules: the template process died"
    ]


@pytest.mark.kernel
@pytest.mark.tools
def test_no_preload_starts_every_kernel_normally(
    project: Path, notebook: NotebookFactory, tmp_path: Path
) -> None:
    notebook("notebooks/a.ipynb", [START, "import numpy", save(tmp_path / "a.json")])

    done = nbci(["run", "--no-preload"], project)

    assert done.returncode == 0, done.stderr
    assert not read(tmp_path / "a.json")["forked"]


@pytest.mark.parametrize(
    ("value", "preload"),
    [("true", ()), ("false", None), ('["torch", "jax.numpy"]', ("torch", "jax.numpy"))],
)
def test_preload_in_the_configuration(value: str, preload: tuple[str, ...] | None) -> None:
    config = parse_config(tomllib.loads(f"preload = {value}"), root=Path("."), file="nbci.toml")
    assert config.preload == preload


@pytest.mark.parametrize("value", ['"torch"', '["not a module"]', "3"])
def test_a_wrong_preload_is_one_line(value: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(tomllib.loads(f"preload = {value}"), root=Path("."), file="nbci.toml")
    assert str(error.value).startswith(
        "nbci.toml: preload: expected true, false or a list of module names, got"
    )


# -- what is pre-imported ----------------------------------------------------------------


def test_only_installed_third_party_top_level_imports_are_preloaded(
    project: Path, notebook: NotebookFactory
) -> None:
    cells = [
        "%matplotlib inline\nimport numpy as np, os.path\nfrom sklearn.linear_model import Ridge",
        "!pip list\nimport helper\nfrom . import sibling\nfrom pkg.sub import thing",
        "try:\n    import tensorflow as tf\nexcept ImportError:\n    pass",
        "def f():\n    import scipy\nif True:\n    import matplotlib.pyplot as plt",
        "this is not python",
    ]
    a = notebook("notebooks/a.ipynb", cells)
    b = notebook("notebooks/b.ipynb", ["import pandas, numpy\nimport matplotlib.pyplot as plt"])
    c = notebook("notebooks/c.ipynb", ["import numpy", "def f():\n    import torch"])
    (project / "notebooks" / "helper.py").write_text("")
    (project / "notebooks" / "pkg").mkdir()
    folders = [project / "notebooks"]

    # Each notebook's own imports, up to the first line that could change them (`!pip`):
    # a configured module only for a notebook that imports it somewhere (issue 19).
    assert modules_for(a, folders, ("torch",)) == ("numpy", "os.path", "sklearn.linear_model")
    assert modules_for(b, folders) == ("pandas", "numpy", "matplotlib.pyplot")
    assert modules_for(c, folders, ("torch",)) == ("numpy", "torch")
    (project / "notebooks" / "matplotlibrc").write_text("lines.linewidth: 3\n")
    assert modules_for(b, folders) == ("pandas", "numpy")


# -- no process left behind -----------------------------------------------------------------

DIE = "import os\nos._exit(3)"
HANG = "import time\ntime.sleep(600)"


@pytest.mark.kernel
def test_forked_kernels_that_die_or_hang_leave_nothing_behind(
    project: Path, notebook: NotebookFactory, tmp_path: Path
) -> None:
    records = {name: tmp_path / f"{name}.json" for name in ("die", "hang")}
    spawn = (
        "import os, subprocess, numpy\n"
        "record['child'] = subprocess.Popen(['sleep', '600']).pid\n"
        "record['worker'] = int(os.environ['JPY_PARENT_PID'])"
    )
    notebook("notebooks/die.ipynb", [START, spawn, save(records["die"]), DIE])
    notebook("notebooks/hang.ipynb", [START, spawn, save(records["hang"]), HANG])
    jobs = [
        Job("die", "notebooks/die.ipynb"),
        Job("hang", "notebooks/hang.ipynb", cell_timeout=2),
    ]

    results = run(jobs, project, workers=2)

    assert results["die"].status == "died" and "exit code 3" in str(results["die"].error)
    assert results["hang"].status == "timeout"
    recorded = [read(path) for path in records.values()]
    assert all(r["forked"] for r in recorded)
    workers = {r["worker"] for r in recorded}
    assert_all_gone([p for r in recorded for p in (r["pid"], r["child"])], workers=workers)


SIGNALLED = """
import sys
from pathlib import Path

from nbci.errors import Interrupted
from nbci.execute import ExecuteOptions, execute_jobs
from nbci.model import Job


def main():
    project = Path(sys.argv[1])
    options = ExecuteOptions(root=project, out_dir=project / "nbci-out", workers=1)
    try:
        list(execute_jobs([Job("long", "notebooks/long.ipynb")], options))
    except Interrupted:
        sys.exit(3)


if __name__ == "__main__":
    main()
"""


@pytest.mark.kernel
@pytest.mark.tools
def test_sigterm_stops_forked_kernels_and_the_template(
    project: Path, notebook: NotebookFactory, tmp_path: Path
) -> None:
    record = tmp_path / "long.json"
    worker = "import os, numpy\nrecord['worker'] = int(os.environ['JPY_PARENT_PID'])"
    notebook("notebooks/long.ipynb", [START, worker, save(record), HANG])
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(SIGNALLED))
    process = subprocess.Popen(
        [sys.executable, str(driver), str(project)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not record.exists() and process.poll() is None:
            assert time.monotonic() < deadline, "the notebook never started"
            time.sleep(0.1)
        time.sleep(0.3)
        process.terminate()
        assert process.wait(60) == 3
    finally:
        process.kill()

    long = read(record)
    assert long["forked"]
    assert_all_gone([long["pid"], long["worker"]], workers=[long["worker"]])  # and its template


# -- jupyter_client drives a forked kernel unchanged ------------------------------------------

CLIENT = driver("""

def run(kc, code, timeout=30):
    return kc.execute_interactive(code, timeout=timeout, output_hook=lambda m: None)


def main():
    template, km, folder = forking(["numpy"])  # a template of one notebook's imports
    km.start_kernel(cwd=str(folder))
    seen = {"provisioner": type(km.provisioner).__name__, "pid": km.provisioner.pid}
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=30)
    reply = kc.execute_interactive(
        "import sys; x = 1", user_expressions={"forked": "'numpy' in sys.modules"}, timeout=30
    )
    seen["forked"] = reply["content"]["user_expressions"]["forked"]["data"]["text/plain"]
    kc.execute("import time\\nwhile True: time.sleep(0.01)")
    import time; time.sleep(1.0)
    km.interrupt_kernel()
    reply = kc.get_shell_msg(timeout=30)
    seen["interrupted"] = reply["content"].get("ename")
    km.restart_kernel(now=True)
    kc.wait_for_ready(timeout=30)
    seen["restarted_pid"] = km.provisioner.pid
    reply = run(kc, "x")
    seen["state_after_restart"] = reply["content"].get("ename")
    km.shutdown_kernel(now=False)
    seen["alive_after_shutdown"] = km.is_alive()
    seen["exit_code"] = km.provisioner.process.poll() if km.provisioner.process else "reaped"
    kc.stop_channels()
    template.stop()
    print(json.dumps(seen))
""")


@pytest.mark.kernel
@pytest.mark.tools
def test_jupyter_client_interrupts_restarts_and_shuts_down_a_forked_kernel(
    tmp_path: Path,
) -> None:
    seen = run_script(CLIENT, tmp_path)
    assert seen["provisioner"] == "ForkProvisioner" and seen["forked"] == "True"
    assert seen["interrupted"] == "KeyboardInterrupt"
    assert seen["restarted_pid"] != seen["pid"]
    assert seen["state_after_restart"] == "NameError"  # a new kernel, nothing kept
    assert seen["alive_after_shutdown"] is False


KERNEL_MODULES = driver("""
LISTED = (
    "import ipykernel.ipkernel, json, sys\\n"
    "print(json.dumps({'files': get_ipython().kernel._kernel_modules,"
    " 'sys': ipykernel.ipkernel.sys is sys, 'numpy': 'numpy' in sys.modules}))"
)


def listed(km):
    km.start_kernel(cwd=tempfile.mkdtemp())
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    said = []
    def hook(message):
        if message["msg_type"] == "stream":
            said.append(message["content"]["text"])
    kc.execute_interactive(LISTED, timeout=60, output_hook=hook)
    km.shutdown_kernel(now=True)
    kc.stop_channels()
    return json.loads("".join(said))


def main():
    template, km, _ = forking(["numpy", "pandas"])
    forked = listed(km)
    fresh = listed(KernelManager(kernel_name="python3"))
    template.stop()
    print(json.dumps({"forked": forked, "fresh": fresh}))
""")


@pytest.mark.kernel
def test_a_forked_kernel_lists_the_kernel_modules_a_fresh_one_does(tmp_path: Path) -> None:
    """ipykernel lists the files of the modules loaded as it starts (its debugger leaves them
    out): a fork of a template that imported numpy and pandas lists those of a fresh kernel,
    not numpy's or pandas' (`fork_server._SysWhileTheKernelStarts`), and gets `sys` back."""
    seen = run_script(KERNEL_MODULES, tmp_path)
    forked, fresh = seen["forked"], seen["fresh"]
    assert forked["numpy"] and not fresh["numpy"]
    assert forked["sys"] and fresh["sys"]
    files, expected = set(forked["files"]), set(fresh["files"])
    assert expected <= files
    assert not [f for f in files if "numpy" in Path(f).parts or "pandas" in Path(f).parts]
    assert len(files - expected) <= len(KERNEL_MACHINERY)  # pre-imported, a kernel's later


# -- issue 22: the template survives bad requests --------------------------------------------


@pytest.mark.kernel
def test_the_base_template_imports_the_kernel_machinery_and_runs_no_thread(
    tmp_path: Path,
) -> None:
    """Nothing it pre-imports may start a thread, even a native one: a forked child has only
    the thread that forked it."""
    from nbci.execute.fork_client import Template

    template = Template(tmp_path, dict(os.environ), tmp_path / "project")
    try:
        report = template.wait_ready(120)
        assert (report.imported, report.unsafe) == (KERNEL_MACHINERY, None)
        assert os.listdir(f"/proc/{template.pid}/task") == [str(template.pid)]
    finally:
        template.stop()


@pytest.mark.kernel
def test_a_malformed_or_stalled_request_does_not_end_the_template(tmp_path: Path) -> None:
    import socket

    from nbci.execute.fork_client import Template, TemplateError, request_fork

    template = Template(tmp_path, dict(os.environ), tmp_path / "project")
    try:
        template.wait_ready(120)
        for garbage in (b"not json\n", b"[1, 2]\n", b'{"op": "fork"}\n', b'{"op": "nope"}\n'):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
                connection.settimeout(30)
                connection.connect(str(template.socket_path))
                connection.sendall(garbage)
                assert b"bad request" in connection.recv(4096)
        with pytest.raises(TemplateError, match="stdout, stderr and stdin"):
            request_fork(template.socket_path, ["python"], dict(os.environ), "/", [1, 2])
        assert template.alive()
        assert template.fork_set([]).wait_ready(60).imported == ()
    finally:
        template.stop()
