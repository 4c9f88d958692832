"""gates: parsing `[tool.nbci.gates]` and judging a run (and its comparison) by it."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from conftest import examples
from handmade_runs import nb, run
from hypothesis import given, settings
from hypothesis import strategies as st

from nbci.compare import compare
from nbci.errors import GateRuleError
from nbci.gates import Bound, GateRule, evaluate, parse_gates
from nbci.model import Run

NAN = float("nan")
INF = float("inf")


def rules(toml: str) -> tuple[GateRule, ...]:
    return parse_gates(tomllib.loads(toml)["tool"]["nbci"]["gates"], "pyproject.toml")


def reasons(rule_toml: str, head: Run, base: Run | None = None) -> list[tuple[bool, str]]:
    comparison = compare(head, base, label="main") if base is not None else None
    verdict = evaluate(rules(f"[tool.nbci.gates]\n{rule_toml}"), head, comparison)
    return [(r.passed, r.reason) for r in verdict.results]


# -- parsing ---------------------------------------------------------------------


def test_parses_the_documented_shape() -> None:
    parsed = rules(
        """
        [tool.nbci.gates]
        accuracy = { min = 0.9, max_drop = "1%" }
        "train:loss" = { max = 0.5, max_rise = 0.05 }
        "*f1*" = { required = true }
        """
    )
    assert parsed == (
        GateRule("accuracy", min=0.9, max_drop=Bound(1.0, relative=True)),
        GateRule("train:loss", max=0.5, max_rise=Bound(0.05)),
        GateRule("*f1*", required=True),
    )
    assert (parsed[0].job_pattern, parsed[0].metric_pattern) == (None, "accuracy")
    assert (parsed[1].job_pattern, parsed[1].metric_pattern) == ("train", "loss")
    assert str(parsed[0].max_drop) == "1%" and str(parsed[1].max_rise) == "0.05"


def test_integer_bounds_and_zero_percent() -> None:
    (rule,) = parse_gates({"rows": {"min": 10, "max_rise": "0%"}}, "nbci.toml")
    assert rule.min == 10.0 and rule.max_rise == Bound(0.0, relative=True)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"accuracy": {"mni": 0.9}}, '"accuracy": unknown key "mni" (did you mean min?)'),
        ({"accuracy": {"maxdrop": 1}}, "(did you mean max_drop?)"),
        ({"accuracy": {"colour": 1}}, 'unknown key "colour"; expected one of min, max,'),
        ({"accuracy": {"min": "90%"}}, '"accuracy": min = "90%": min is an absolute bound'),
        ({"loss": {"max": "0.5"}}, '"loss": max = "0.5": expected a number'),
        ({"loss": {"max": True}}, '"loss": max = true: expected a number'),
        ({"loss": {"max": [1]}}, '"loss": max = [1]: expected a number'),
        ({"loss": {"max": INF}}, '"loss": max = inf: expected a finite number'),
        ({"loss": {"max": NAN}}, '"loss": max = nan: expected a finite number'),
        ({"acc": {"max_drop": "x%"}}, '"acc": max_drop = "x%": expected a number (absolute) or'),
        ({"acc": {"max_drop": "5"}}, '"acc": max_drop = "5": expected a number'),
        ({"acc": {"max_drop": "nan%"}}, 'max_drop = "nan%"'),
        ({"acc": {"max_rise": -0.1}}, '"acc": max_rise = -0.1: expected'),
        ({"acc": {"max_rise": "-1%"}}, "not negative"),
        ({"acc": {"required": "yes"}}, '"acc": required = "yes": expected true or false'),
        ({"acc": {}}, '"acc": the rule checks nothing'),
        ({"acc": {"required": False}}, '"acc": the rule checks nothing'),
        ({"acc": 0.9}, '"acc": expected a table like { min = 0.9, max_drop = "1%" }, got a number'),
        ({"acc": {"min": 2, "max": 1}}, '"acc": min 2 is above max 1'),
        ({"train:": {"min": 1}}, '"train:": expected METRIC or JOB_ID:METRIC'),
        ({":acc": {"min": 1}}, '":acc": expected METRIC or JOB_ID:METRIC'),
        ({"": {"min": 1}}, '"": a rule needs a key'),
        ({"a\nb": {"mni": 1}}, '"a\\nb": unknown key'),
    ],
)
def test_invalid_rules_name_the_rule(table: dict[str, Any], message: str) -> None:
    with pytest.raises(GateRuleError) as raised:
        parse_gates(table, "pyproject.toml")
    text = str(raised.value)
    assert text.startswith("pyproject.toml: [tool.nbci.gates] ")
    assert message in text
    assert "\n" not in text


def test_error_names_the_table_of_an_nbci_toml() -> None:
    with pytest.raises(
        GateRuleError, match=r'^nbci.toml: \[gates\] "acc": the rule checks nothing'
    ):
        parse_gates({"acc": {}}, "nbci.toml", table_name="[gates]")


def test_gates_must_be_a_table() -> None:
    with pytest.raises(GateRuleError, match=r"nbci.toml: \[tool.nbci.gates\] must be a table"):
        parse_gates([1, 2], "nbci.toml")  # type: ignore[arg-type]


toml_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**400)
    | st.floats()
    | st.text(max_size=6)
    | st.sampled_from(["1%", "-1%", "nan%", "1e999%", " 2 %", "%"]),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["min", "max", "max_drop", "max_rise", "required", "mni"])
            | st.text(max_size=4),
            children,
            max_size=4,
        )
    ),
    max_leaves=8,
)


@settings(max_examples=examples(300), deadline=None)
@given(st.dictionaries(st.text(max_size=8), toml_like, max_size=4))
def test_parse_raises_only_gate_rule_errors(table: dict[str, Any]) -> None:
    try:
        parsed = parse_gates(table, "pyproject.toml")
    except GateRuleError as error:
        assert str(error).startswith("pyproject.toml: [tool.nbci.gates]")
    else:
        assert len(parsed) == len(table)


# -- min / max -------------------------------------------------------------------


def test_min_and_max_reasons() -> None:
    head = run(nb("train", accuracy=0.912, loss=0.2), nb("eval", accuracy=0.95))
    assert reasons("accuracy = { min = 0.93 }\nloss = { max = 0.1 }", head) == [
        (False, "train:accuracy 0.9120 < min 0.93"),
        (True, "eval:accuracy 0.9500 ≥ min 0.93"),
        (False, "train:loss 0.2000 > max 0.1"),
    ]
    assert reasons("loss = { max = 0.2 }", head) == [(True, "train:loss 0.2000 ≤ max 0.2")]


def test_value_that_only_looks_equal_to_the_bound_shows_more_digits() -> None:
    head = run(nb("t", accuracy=0.92999))
    assert reasons("accuracy = { min = 0.93 }", head) == [(False, "t:accuracy 0.92999 < min 0.93")]


def test_nan_and_infinite_values_against_min_max() -> None:
    head = run(nb("t", loss=NAN, acc=-INF, big=INF))
    assert reasons("loss = { min = 0, max = 1 }\nacc = { min = 0 }\nbig = { max = 1 }", head) == [
        (False, "t:loss NaN is not a number (min 0)"),
        (False, "t:loss NaN is not a number (max 1)"),
        (False, "t:acc -inf < min 0"),
        (False, "t:big inf > max 1"),
    ]


def test_string_and_bool_metrics() -> None:
    head = run(nb("t", note="fast", converged=True))
    assert reasons("note = { min = 0 }\nconverged = { min = 1 }", head) == [
        (False, 't:note "fast" is not a number (min 0)'),
        (True, "t:converged true ≥ min 1"),
    ]


# -- max_drop / max_rise -----------------------------------------------------------


def test_absolute_and_relative_drop() -> None:
    base = run(nb("t", accuracy=0.95, f1=0.80))
    head = run(nb("t", accuracy=0.92, f1=0.796))
    assert reasons('accuracy = { max_drop = 0.01 }\nf1 = { max_drop = "1%" }', head, base) == [
        (False, "t:accuracy dropped 0.03000 (0.9500 → 0.9200) > max_drop 0.01"),
        (True, "t:f1 dropped 0.50% (0.8000 → 0.7960) ≤ max_drop 1%"),
    ]


def test_relative_rise_and_no_move() -> None:
    base = run(nb("t", loss=0.20, time=10))
    head = run(nb("t", loss=0.25, time=9))
    assert reasons('loss = { max_rise = "10%" }\ntime = { max_rise = "10%" }', head, base) == [
        (False, "t:loss rose 25% (0.2000 → 0.2500) > max_rise 10%"),
        (True, "t:time (10 → 9) no rise (max_rise 10%)"),
    ]


def test_drop_exactly_at_the_bound_passes_despite_float_noise() -> None:
    base = run(nb("t", accuracy=0.95))
    head = run(nb("t", accuracy=0.94))  # 0.95 - 0.94 == 0.010000000000000009
    ((passed, _),) = reasons("accuracy = { max_drop = 0.01 }", head, base)
    assert passed


def test_relative_bound_against_zero_baseline() -> None:
    base = run(nb("t", errors=0, misses=0))
    head = run(nb("t", errors=2, misses=0))
    assert reasons('errors = { max_rise = "50%" }\nmisses = { max_rise = "50%" }', head, base) == [
        (False, "t:errors rose 2 (0 → 2) > max_rise 50%"),
        (True, "t:misses (0 → 0) no rise (max_rise 50%)"),
    ]


def test_no_baseline_passes_and_says_so() -> None:
    head = run(nb("t", accuracy=0.5, auc=0.5))
    base = run(nb("t", accuracy=NAN))
    expected = [
        (True, "t:accuracy no baseline, max_drop not checked"),
        (True, "t:auc no baseline, max_drop not checked"),
    ]
    assert reasons("'*' = { max_drop = 0.01 }", head) == expected
    assert reasons("'*' = { max_drop = 0.01 }", head, base) == [
        (True, "t:accuracy baseline NaN, max_drop not checked"),
        (True, "t:auc no baseline, max_drop not checked"),
    ]


def test_value_turned_nan_fails_a_drop_gate() -> None:
    base = run(nb("t", accuracy=0.9))
    head = run(nb("t", accuracy=NAN))
    assert reasons("accuracy = { max_drop = 0.01 }", head, base) == [
        (False, "t:accuracy NaN is not a number (max_drop 0.01)"),
    ]


# -- targets: job rules, globs, required -----------------------------------------


def test_job_rule_applies_to_that_job_only_and_globs_work_on_both_parts() -> None:
    head = run(nb("train-a", loss=0.6, val_loss=0.1), nb("train-b", loss=0.4), nb("eval", loss=0.9))
    assert reasons('"train-a:loss" = { max = 0.5 }', head) == [
        (False, "train-a:loss 0.6000 > max 0.5")
    ]
    assert reasons('"train-*:*loss" = { max = 0.5 }', head) == [
        (False, "train-a:loss 0.6000 > max 0.5"),
        (True, "train-a:val_loss 0.1000 ≤ max 0.5"),
        (True, "train-b:loss 0.4000 ≤ max 0.5"),
    ]


def test_bare_metric_rule_ignores_ok_jobs_without_it() -> None:
    head = run(nb("prep", rows=3), nb("train", accuracy=0.95))
    assert reasons("accuracy = { min = 0.9 }", head) == [(True, "train:accuracy 0.9500 ≥ min 0.9")]


def test_metric_missing_from_an_ok_job_fails_nothing_unless_required() -> None:
    head = run(nb("train", loss=0.1))
    assert reasons('"train:accuracy" = { min = 0.9 }', head) == []
    assert reasons('"train:accuracy" = { min = 0.9, required = true }', head) == [
        (False, "train:accuracy missing")
    ]


def test_required_bare_metric_needs_one_job() -> None:
    head = run(nb("a", f1=0.5), nb("b", macro_f1=0.7), nb("c", rows=1))
    assert reasons("'*f1*' = { required = true }", head) == [
        (True, "a:f1 present"),
        (True, "b:macro_f1 present"),
    ]
    assert reasons("auc = { required = true }", head) == [(False, "auc missing: no job has it")]
    assert reasons("'*auc*' = { required = true }", head) == [
        (False, "*auc* missing: no job has a matching metric")
    ]


def test_required_job_rule_needs_the_job_and_every_matched_job_to_have_it() -> None:
    head = run(nb("train-a", f1=0.5), nb("train-b", loss=1.0))
    assert reasons('"train-*:f1" = { required = true }', head) == [
        (True, "train-a:f1 present"),
        (False, "train-b:f1 missing"),
    ]
    assert reasons('"train-*:*f1*" = { required = true }', head)[1] == (
        False,
        "train-b:*f1* no metric matches",
    )
    assert reasons('"eval:f1" = { required = true }', head) == [
        (False, "eval:f1 missing: no such job")
    ]
    assert reasons('"eval-*:f1" = { required = true }', head) == [
        (False, "eval-*:f1 missing: no job matches eval-*")
    ]


def test_shard_run_does_not_fail_for_what_another_shard_holds() -> None:
    head = run(nb("a", f1=0.5), shard="1/2")
    assert reasons('"b:f1" = { required = true }\nauc = { required = true }', head) == []


# -- jobs that are not ok --------------------------------------------------------


def test_not_ok_job_fails_every_rule_naming_it() -> None:
    head = run(nb("train", "timeout"))
    assert reasons('"train:accuracy" = { min = 0.9, max_drop = 0.1 }', head) == [
        (False, "train:accuracy fails: job timed out")
    ]
    assert reasons('"train:*" = { min = 0 }', head) == [(False, "train:* fails: job timed out")]


def test_not_ok_job_fails_bare_rules_for_metrics_it_had() -> None:
    base = run(nb("train", accuracy=0.9, f1=0.8), nb("prep", rows=10))
    head = run(nb("train", "failed"), nb("prep", "died"))
    assert reasons("'*' = { min = 0 }", head, base) == [
        (False, "train fails: job failed, so 2 gate checks did not run (train:accuracy, train:f1)"),
        (False, "prep:rows fails: kernel died"),
    ]
    # prep never had an accuracy when it was ok: its failure is not an accuracy failure.
    assert reasons("accuracy = { min = 0 }", head, base) == [
        (False, "train:accuracy fails: job failed")
    ]


def test_a_failed_notebook_is_one_gate_failure_whatever_the_rules_and_metrics() -> None:
    base = run(nb("train", accuracy=0.9, f1=0.8, loss=0.1), nb("eval", auc=0.7))
    head = run(nb("train", "failed"), nb("eval", auc=0.8))
    config = "accuracy = { max_drop = 0.01 }\nf1 = { min = 0.5 }\n'*' = { min = 0 }"

    verdict = evaluate(rules(f"[tool.nbci.gates]\n{config}"), head, compare(head, base, label="b"))

    (failure,) = verdict.failures
    assert failure.job_id == "train" and failure.check == "status"
    assert failure.rule == "accuracy, f1, *"
    assert failure.reason == (
        "train fails: job failed, so 5 gate checks did not run "
        "(train:accuracy, train:f1, train:loss)"
    )
    assert [r.passed for r in verdict.results] == [False, True]  # and eval:auc ≥ 0


def test_not_ok_job_without_baseline_fails_bare_rules() -> None:
    head = run(nb("train", "failed"), nb("eval", accuracy=0.95))
    assert reasons("accuracy = { min = 0.9 }", head) == [
        (False, "train:accuracy fails: job failed"),
        (True, "eval:accuracy 0.9500 ≥ min 0.9"),
    ]


def test_not_ok_job_that_was_not_ok_on_the_baseline_either_fails_bare_rules() -> None:
    base = run(nb("train", "failed"))
    head = run(nb("train", "invalid"))
    assert reasons("accuracy = { min = 0.9 }", head, base) == [
        (False, "train:accuracy fails: job is invalid")
    ]


def test_not_ok_job_with_partial_metrics_fails_on_them() -> None:
    head = run(nb("train", "failed", accuracy=0.99))
    verdict = evaluate(rules("[tool.nbci.gates]\naccuracy = { min = 0.9 }"), head, None)
    (result,) = verdict.results
    assert (result.job_id, result.metric, result.check, result.passed) == (
        "train",
        "accuracy",
        "status",
        False,
    )
    assert not verdict.passed


# -- the verdict -----------------------------------------------------------------


def test_verdict_fields_and_order() -> None:
    head = run(nb("a", accuracy=0.95, loss=0.2), nb("b", accuracy=0.85))
    base = run(nb("a", accuracy=0.96, loss=0.2), nb("b", accuracy=0.85))
    verdict = evaluate(
        rules('[tool.nbci.gates]\naccuracy = { min = 0.9, max_drop = "2%" }'),
        head,
        compare(head, base, label="main"),
    )
    assert [(r.rule, r.job_id, r.metric, r.check, r.passed) for r in verdict.results] == [
        ("accuracy", "a", "accuracy", "min", True),
        ("accuracy", "a", "accuracy", "max_drop", True),
        ("accuracy", "b", "accuracy", "min", False),
        ("accuracy", "b", "accuracy", "max_drop", True),
    ]
    assert not verdict.passed
    assert [r.reason for r in verdict.failures] == ["b:accuracy 0.8500 < min 0.9"]


def test_no_rules_pass() -> None:
    assert evaluate((), run(nb("a", "failed")), None).passed


def test_reasons_stay_on_one_line_whatever_the_notebook_named() -> None:
    head = run(nb("t", **{"acc\nuracy": 0.1}))
    (result,) = evaluate(rules("[tool.nbci.gates]\n'acc*' = { min = 0.9 }"), head, None).results
    assert result.metric == "acc\nuracy"
    assert result.reason == "t:acc\\u000auracy 0.1000 < min 0.9"


metric_values = st.one_of(
    st.floats(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.booleans(),
    st.text(max_size=3),
)
runs = st.builds(
    lambda jobs: run(*(nb(j, s, **m) for j, (s, m) in jobs.items())),
    st.dictionaries(
        st.sampled_from(["a", "b"]),
        st.tuples(
            st.sampled_from(["ok", "failed", "timeout"]),
            st.dictionaries(st.sampled_from(["acc", "loss", "f1"]), metric_values, max_size=3),
        ),
    ),
)
rule_tables = st.dictionaries(
    st.sampled_from(["acc", "loss", "*", "a:acc", "b:*", "c:f1", "?:loss"]),
    st.fixed_dictionaries(
        {},
        optional={
            "min": st.floats(-1, 1),
            "max": st.floats(1, 2),
            "max_drop": st.floats(0, 1) | st.sampled_from(["0%", "5%", "100%"]),
            "max_rise": st.floats(0, 1) | st.sampled_from(["0%", "5%"]),
            "required": st.just(True),
        },
    ).filter(bool),
    min_size=1,
    max_size=3,
)


@settings(max_examples=examples(200), deadline=None)
@given(table=rule_tables, head=runs, base=runs | st.none())
def test_evaluate_never_raises_and_gives_one_line_reasons(
    table: dict[str, Any], head: Run, base: Run | None
) -> None:
    comparison = compare(head, base, label="b") if base is not None else None
    verdict = evaluate(parse_gates(table, "x.toml"), head, comparison)
    for result in verdict.results:
        assert result.reason and "\n" not in result.reason
        assert result.check in ("min", "max", "max_drop", "max_rise", "required", "status")
