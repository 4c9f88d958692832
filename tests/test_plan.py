from __future__ import annotations

from pathlib import Path

import pytest
from conftest import NotebookFactory

from nbci.config import load_config
from nbci.errors import ConfigError, UsageError
from nbci.plan import parse_parameter, plan


def test_default_plan_finds_notebooks_skipping_checkpoints_and_output(
    project: Path, notebook: NotebookFactory
) -> None:
    notebook("notebooks/train.ipynb", ["x = 1"])
    notebook("notebooks/sub/profile.ipynb", ["y = 2"])
    notebook("notebooks/.ipynb_checkpoints/train-checkpoint.ipynb", ["x = 1"])
    notebook("nbci-out/notebooks/train.ipynb", ["x = 1"])
    planned = plan(load_config(project))
    assert [(j.id, j.path) for j in planned.jobs] == [
        ("sub-profile", "notebooks/sub/profile.ipynb"),
        ("train", "notebooks/train.ipynb"),
    ]
    assert all(j.parameters == {} for j in planned.jobs)


def test_matrix_expands_to_a_cartesian_product_with_stable_ids(
    project: Path, notebook: NotebookFactory
) -> None:
    notebook("notebooks/train.ipynb", ["pass"], parameters='lr = 0.1\nmodel = "a"\nseed = 0')
    (project / "nbci.toml").write_text(
        "[parameters]\nseed = 7\n"
        '[[notebook]]\npath = "notebooks/train.ipynb"\n'
        'matrix = { lr = [0.1, 0.01], model = ["svc", "log reg"] }\n'
    )
    planned = plan(load_config(project))
    assert [j.id for j in planned.jobs] == [
        "train-lr-0.1-model-svc",
        "train-lr-0.1-model-log_reg",
        "train-lr-0.01-model-svc",
        "train-lr-0.01-model-log_reg",
    ]
    assert planned.jobs[1].parameters == {"seed": 7, "lr": 0.1, "model": "log reg"}
    assert plan(load_config(project)).jobs == planned.jobs


def test_overrides_replace_matrix_axes_and_apply_where_defined(
    project: Path, notebook: NotebookFactory
) -> None:
    notebook("notebooks/train.ipynb", ["pass"], parameters="C = 1.0\nseed = 0")
    notebook("notebooks/profile.ipynb", ["pass"], parameters="seed = 0")
    (project / "nbci.toml").write_text(
        '[[notebook]]\npath = "notebooks/train.ipynb"\nmatrix = { C = [0.1, 1.0] }\n'
    )
    planned = plan(load_config(project), overrides={"C": 0.5, "seed": 3})
    assert {j.id: dict(j.parameters) for j in planned.jobs} == {
        "profile": {"seed": 3},
        "train": {"C": 0.5, "seed": 3},
    }


def test_explicit_paths_and_folders(project: Path, notebook: NotebookFactory) -> None:
    notebook("notebooks/a.ipynb", ["pass"])
    notebook("other/b.ipynb", ["pass"])
    config = load_config(project)
    assert [j.id for j in plan(config, [Path("other")]).jobs] == ["other-b"]
    assert [j.id for j in plan(config, [Path("notebooks/a.ipynb")]).jobs] == ["a"]
    with pytest.raises(UsageError, match=r"missing\.ipynb: no such notebook"):
        plan(config, [Path("missing.ipynb")])


def test_ids_depend_on_the_path_alone_never_on_the_selection(
    project: Path, notebook: NotebookFactory
) -> None:
    notebook("notebooks/a/train.ipynb", ["pass"])
    notebook("notebooks/b/train.ipynb", ["pass"])
    notebook("examples/train.ipynb", ["pass"])
    notebook("train.ipynb", ["pass"])
    config = load_config(project)
    everything = [Path("notebooks"), Path("examples"), Path("train.ipynb")]
    ids = {j.path: j.id for j in plan(config, everything).jobs}
    assert ids == {
        "notebooks/a/train.ipynb": "a-train",
        "notebooks/b/train.ipynb": "b-train",
        "examples/train.ipynb": "examples-train",
        "train.ipynb": "train",
    }
    for path, expected in ids.items():
        (alone,) = plan(config, [Path(path)]).jobs
        assert alone.id == expected
    (folder_b,) = plan(config, [Path("notebooks/b")]).jobs
    assert folder_b.id == "b-train"


def test_two_notebooks_that_would_share_an_id_are_refused_not_renamed(
    project: Path, notebook: NotebookFactory
) -> None:
    notebook("notebooks/a/b-c.ipynb", ["pass"])
    notebook("notebooks/a-b/c.ipynb", ["pass"])
    with pytest.raises(ConfigError, match=r"would both have the job id 'a-b-c': rename one"):
        plan(load_config(project))


def test_a_glob_that_matches_nothing_is_a_config_error(project: Path) -> None:
    (project / "nbci.toml").write_text('notebooks = ["nb/*.ipynb"]\n')
    with pytest.raises(ConfigError, match=r"nbci.toml: notebooks: 'nb/\*.ipynb' matches no"):
        plan(load_config(project))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ('deps = ["data/*.cvs"]\n', r"nbci.toml: deps: 'data/\*.cvs' matches no file"),
        (
            '[[notebook]]\npath = "notebooks/a.ipynb"\ndeps = ["data/tarin.csv"]\n',
            r"nbci.toml: notebook\[0\].deps: 'data/tarin.csv' matches no file",
        ),
        ('deps = ["/etc/*"]\n', r"deps: '/etc/\*' is not a glob relative to the project"),
        ('preload = ["nmupy"]\n', r"nbci.toml: preload: 'nmupy' is not an installed module"),
    ],
)
def test_deps_and_preload_that_find_nothing_are_config_errors(
    project: Path, notebook: NotebookFactory, config: str, message: str
) -> None:
    notebook("notebooks/a.ipynb", ["pass"])
    (project / "data").mkdir()
    (project / "data" / "train.csv").write_text("x\n")
    (project / "nbci.toml").write_text(config)
    with pytest.raises(ConfigError, match=message):
        plan(load_config(project))
    (project / "nbci.toml").write_text('deps = ["data/*.csv"]\npreload = ["json.decoder"]\n')
    assert [j.deps for j in plan(load_config(project)).jobs] == [("data/*.csv",)]


def test_an_empty_folder_given_on_the_command_line_is_a_usage_error(
    project: Path, notebook: NotebookFactory
) -> None:
    notebook("notebooks/a.ipynb", ["pass"])
    (project / "empty").mkdir()
    notebook("outputs/nbci-out/notebooks/a.ipynb", ["pass"])
    (project / "outputs" / "nbci-out" / "results.json").write_text('{"schema": "nbci.results/2"}')
    config = load_config(project)
    for folder in ("empty", "outputs"):
        with pytest.raises(UsageError, match=rf"^{folder}: the folder holds no notebook$"):
            plan(config, [Path(folder)])


def test_an_exclude_that_leaves_nothing_is_a_config_error(
    project: Path, notebook: NotebookFactory
) -> None:
    notebook("notebooks/a.ipynb", ["pass"])
    (project / "nbci.toml").write_text('exclude = ["notebooks/*.ipynb"]\n')
    config = load_config(project)
    with pytest.raises(ConfigError, match=r"^nbci.toml: exclude: leaves no notebook to run$"):
        plan(config)
    with pytest.raises(ConfigError, match=r"leaves no notebook to run"):
        plan(config, [Path("notebooks")])


def test_a_glob_over_everything_never_selects_nbcis_own_outputs(
    project: Path, notebook: NotebookFactory
) -> None:
    notebook("notebooks/a.ipynb", ["pass"])
    for run_folder in ("nbci-out", "runs/shard-1", "elsewhere"):
        notebook(f"{run_folder}/notebooks/a.ipynb", ["pass"])
        (project / run_folder / "results.json").write_text('{\n  "schema": "nbci.results/2"}')
    notebook(f"cache/entries/{'0' * 64}/notebooks/a.ipynb", ["pass"])
    (project / "cache" / "entries" / ("0" * 64) / "entry.json").write_text("{}")
    notebook(".nbci-out.staging-x/notebooks/a.ipynb", ["pass"])
    notebook("reports/notebooks/b.ipynb", ["pass"])  # no results.json: the user's own
    (project / "nbci.toml").write_text('notebooks = ["**/*.ipynb"]\nout = "elsewhere"\n')

    planned = plan(load_config(project), out_dir=project / "other-out")

    assert [j.path for j in planned.jobs] == ["notebooks/a.ipynb", "reports/notebooks/b.ipynb"]


def test_an_undefined_parameter_is_a_config_error_naming_file_and_key(
    project: Path, notebook: NotebookFactory
) -> None:
    notebook("notebooks/train.ipynb", ["pass"], parameters="lr = 0.1")
    (project / "nbci.toml").write_text(
        '[[notebook]]\npath = "notebooks/train.ipynb"\nparameters = { lrr = 1 }\n'
    )
    with pytest.raises(ConfigError) as raised:
        plan(load_config(project))
    assert str(raised.value) == (
        "nbci.toml: parameters for notebooks/train.ipynb: 'lrr' is not defined in its "
        "'parameters' cell (expected one of: lr)"
    )


def test_a_cli_parameter_no_notebook_defines_is_a_usage_error(
    project: Path, notebook: NotebookFactory
) -> None:
    notebook("notebooks/train.ipynb", ["pass"], parameters="lr = 0.1")
    with pytest.raises(UsageError, match="-p epochs: no selected notebook"):
        plan(load_config(project), overrides={"epochs": 3})


def test_parameters_for_a_notebook_without_parameters_cell_make_it_invalid(
    project: Path, notebook: NotebookFactory
) -> None:
    notebook("notebooks/plain.ipynb", ["x = 1"])
    notebook("notebooks/train.ipynb", ["pass"], parameters="lr = 0.1")
    (project / "nbci.toml").write_text(
        '[[notebook]]\npath = "notebooks/plain.ipynb"\nparameters = { lr = 1 }\n'
    )
    planned = plan(load_config(project))
    (problem,) = planned.problems
    assert problem.job.id == "plain"
    assert "no cell tagged 'parameters'" in problem.message


def test_unreadable_notebook_is_planned_so_the_executor_reports_it(project: Path) -> None:
    (project / "notebooks").mkdir()
    (project / "notebooks" / "broken.ipynb").write_text("{not json")
    planned = plan(load_config(project))
    assert [j.id for j in planned.jobs] == ["broken"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("C=0.5", ("C", 0.5)),
        ("n=3", ("n", 3)),
        ("flag=true", ("flag", True)),
        ("model=svc", ("model", "svc")),
        ('name="x y"', ("name", "x y")),
        ("layers=[1, 2]", ("layers", [1, 2])),
        ("empty=", ("empty", "")),
    ],
)
def test_parse_parameter(text: str, expected: tuple[str, object]) -> None:
    assert parse_parameter(text) == expected


@pytest.mark.parametrize("text", ["novalue", "1x=2", "=3", "a-b=1"])
def test_parse_parameter_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="expected NAME=VALUE"):
        parse_parameter(text)
