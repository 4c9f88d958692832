"""Job ids: made from the path and matrix values alone; older ids still compare."""

from __future__ import annotations

from dataclasses import replace

import pytest
from handmade_runs import nb, run

from nbci.compare import compare
from nbci.ids import MAX_ID, job_id, pair_renamed, with_head_ids
from nbci.model import NotebookResult


@pytest.mark.parametrize(
    ("path", "varying", "expected"),
    [
        ("notebooks/train.ipynb", {}, "train"),
        ("notebooks/cv/train.ipynb", {}, "cv-train"),
        ("examples/sub/train.ipynb", {}, "examples-sub-train"),
        ("train.ipynb", {}, "train"),
        ("notebooks/train.ipynb", {"model": "log reg", "lr": 0.1}, "train-lr-0.1-model-log_reg"),
        ("docs/notebooks/a b.ipynb", {}, "docs-notebooks-a_b"),
    ],
)
def test_id_from_path_and_matrix_values(
    path: str, varying: dict[str, object], expected: str
) -> None:
    assert job_id(path, varying) == expected


def test_long_ids_are_cut_and_stay_distinct() -> None:
    first = job_id("notebooks/" + "x" * 300 + "a.ipynb", {})
    second = job_id("notebooks/" + "x" * 300 + "b.ipynb", {})
    assert len(first) == len(second) == MAX_ID
    assert first != second


def test_a_baseline_stored_under_an_older_id_still_compares() -> None:
    # nbci 0.1 called examples/train.ipynb "train"; now it is "examples-train".
    old = replace(nb("train", accuracy=0.80), path="examples/train.ipynb")
    new = replace(nb("examples-train", accuracy=0.85), path="examples/train.ipynb")
    comparison = compare(run(new), run(old), label="main")
    assert comparison.added_jobs == () and comparison.removed_jobs == ()
    delta = comparison.delta("examples-train", "accuracy")
    assert delta is not None and delta.baseline == 0.80 and delta.value == 0.85


def test_renamed_jobs_of_one_notebook_pair_by_parameters() -> None:
    head = [
        replace(nb("train-lr-0.1"), path="t.ipynb", parameters={"lr": 0.1}),
        replace(nb("train-lr-1"), path="t.ipynb", parameters={"lr": 1}),
    ]
    base = [
        replace(nb("old-a"), path="t.ipynb", parameters={"lr": 1}),
        replace(nb("old-b"), path="t.ipynb", parameters={"lr": 0.1}),
        replace(nb("gone"), path="gone.ipynb"),
    ]
    assert pair_renamed(head, base) == {"old-a": "train-lr-1", "old-b": "train-lr-0.1"}


def test_a_job_present_under_its_own_id_is_never_paired_with_another() -> None:
    head = [replace(nb("a"), path="x.ipynb"), replace(nb("b"), path="x.ipynb")]
    base = [replace(nb("a"), path="x.ipynb"), replace(nb("c"), path="x.ipynb")]
    assert pair_renamed(head, base) == {"c": "b"}


def test_stored_runs_of_the_history_take_the_head_ids() -> None:
    head = [replace(nb("examples-train"), path="examples/train.ipynb")]
    stored = run(replace(nb("train", accuracy=0.8), path="examples/train.ipynb"), nb("other"))
    assert [n.id for n in with_head_ids(head, stored).notebooks] == ["examples-train", "other"]
    assert with_head_ids(head, run(nb("other"))) == run(nb("other"))


def test_a_matrix_axis_set_with_p_compares_with_the_baseline_job_of_that_value() -> None:
    # `nbci run -p lr=0.1` runs `train`; the baseline ran the matrix lr = [0.05, 0.1].
    def train(job_id: str, lr: float, accuracy: float) -> NotebookResult:
        return replace(
            nb(job_id, accuracy=accuracy), path="notebooks/train.ipynb", parameters={"lr": lr}
        )

    head = run(train("train", 0.1, 0.91))
    base = run(train("train-lr-0.05", 0.05, 0.80), train("train-lr-0.1", 0.1, 0.91))

    comparison = compare(head, base, label="main")

    delta = comparison.delta("train", "accuracy")
    assert delta is not None and delta.baseline == 0.91 and delta.change == "unchanged"
    assert comparison.parameters == ()
    assert comparison.removed_jobs == ("train-lr-0.05",)


def test_with_no_job_of_equal_parameters_a_notebook_of_many_jobs_is_not_paired() -> None:
    head = [replace(nb("train"), path="t.ipynb", parameters={"lr": 0.3})]
    base = [
        replace(nb("train-lr-0.05"), path="t.ipynb", parameters={"lr": 0.05}),
        replace(nb("train-lr-0.1"), path="t.ipynb", parameters={"lr": 0.1}),
    ]
    assert pair_renamed(head, base) == {}
