"""Which of nbci's modules may import which: the executor imports no later stage, and the
forges of `nbci/publish/` stay apart.

Data flows one way: the pipeline runs the stages in order, and the executor (`nbci/execute/`)
imports none of the stages that come after it, not even inside a function. What a worker does
with a notebook that ran (collect and render, `nbci.notebook_outputs`) is handed to it by the
pipeline (`ExecuteOptions.after_notebook`).

Each forge lives in its own sub-package of `nbci/publish/` (`github/`, `gitlab/`,
`bitbucket/`) and implements `nbci/publish/forge.py`; the flow around them is
forge-neutral. So a forge never imports another forge, the neutral modules reach a
forge only through `connect` (which picks one, importing it inside the function that
needs it, so that `import nbci.publish` loads no forge's client library), and nothing
outside `nbci/publish/` imports a forge at all.
"""

from __future__ import annotations

from source_imports import ROOT, imports, module_name

EXECUTE = "nbci.execute"
AFTER_EXECUTE = (
    "nbci.collect",
    "nbci.render",
    "nbci.publish",
    "nbci.pipeline",
    "nbci.cache",
    "nbci.compare",
    "nbci.judge",
)
"""What the executor never imports: the stages after it, and the orchestrator."""
PUBLISH = "nbci.publish"
FORGES = ("github", "gitlab", "bitbucket")
PICKS_THE_FORGE = f"{PUBLISH}.connect"
"""The one neutral module that imports the forges (inside its functions)."""
READS_THE_ARTIFACT = {PUBLISH: {f"{PUBLISH}.github.context"}}
"""Before a forge is chosen, publish checks the `pr-number` file that GitHub's workflow puts
in the artifact (`read_artifact_pr`): a small module without PyGithub."""

FORGE_LIBRARIES = {"github", "gitlab", "requests"}
"""PyGithub, python-gitlab and requests (under both): loaded only for the forge chosen."""


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def forge_of(module: str) -> str | None:
    return next((forge for forge in FORGES if within(module, f"{PUBLISH}.{forge}")), None)


MODULES = {module_name(path): path for path in sorted((ROOT / "nbci").rglob("*.py"))}


def test_the_executor_imports_no_later_stage() -> None:
    """The pipeline hands the executor what a worker does after a notebook ran."""
    assert EXECUTE in MODULES and all(stage in MODULES for stage in AFTER_EXECUTE)
    reaching = {
        (module, imported)
        for module, path in MODULES.items()
        if within(module, EXECUTE)
        for imported in imports(path)
        if any(within(imported, later) for later in AFTER_EXECUTE)
    }
    assert reaching == set(), "nbci/execute/ imports a stage that runs after it"


def test_the_forge_packages_exist() -> None:
    assert {f"{PUBLISH}.{forge}" for forge in FORGES} <= MODULES.keys()


def test_a_forge_never_imports_another_forge() -> None:
    crossing = {
        (module, imported)
        for module, path in MODULES.items()
        if forge_of(module) is not None
        for imported in imports(path)
        if forge_of(imported) not in (None, forge_of(module))
    }
    assert crossing == set()


def test_only_connect_picks_a_forge_and_only_inside_its_functions() -> None:
    reaching = {
        (module, imported)
        for module, path in MODULES.items()
        if forge_of(module) is None and module != PICKS_THE_FORGE
        for imported in imports(path)
        if forge_of(imported) is not None
        and not any(within(imported, allowed) for allowed in READS_THE_ARTIFACT.get(module, ()))
    }
    assert reaching == set(), "outside the forges, only nbci.publish.connect imports one"
    at_import_time = {
        imported
        for imported in imports(MODULES[PICKS_THE_FORGE], top_level_only=True)
        if forge_of(imported) is not None
    }
    assert at_import_time == set(), "connect imports a forge when it is chosen, not before"


def test_the_artifact_check_needs_no_forge_library() -> None:
    """What every publish imports before the forge is chosen loads no forge's client."""
    for modules in READS_THE_ARTIFACT.values():
        for module in modules:
            loaded = imports(MODULES[module], top_level_only=True)
            assert {name.split(".")[0] for name in loaded}.isdisjoint(FORGE_LIBRARIES), module
            assert {name for name in loaded if forge_of(name) is not None} == set(), module
