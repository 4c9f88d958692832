"""Gates: pass/fail rules on metrics, from `[tool.nbci.gates]`.

```toml
[tool.nbci.gates]
accuracy = { min = 0.9, max_drop = "1%" }     # every job that has `accuracy`
"train:loss" = { max = 0.5, max_rise = 0.05 } # job `train` only
"*f1*" = { required = true }                  # globs on either part
```

A key is `METRIC` or `JOB_ID:METRIC` (split at the first `:`; job ids never
hold one); either part may be a glob (`fnmatch`, case-sensitive), matched
against the whole metric name. Checks, each giving one `GateResult`:

- `min` / `max`: absolute bounds on the value; NaN, or a value that is not a
  number, fails them.
- `max_drop` / `max_rise`: how far the value may fall / rise against the
  baseline, whatever the metric's direction: a number (absolute) or `"N%"`
  (of |baseline|; against a zero baseline any move that way fails). Without
  a baseline value (no baseline run, new metric, NaN or infinite baseline)
  the check passes with the reason saying so.
- `outside_range = true` (with `max_drop` / `max_rise`): with history, a
  move beyond the bound fails only when the value is also outside the base
  branch's range (`nbci.history`); inside it, the check passes and says so.
  Without enough history the bounds fail as usual.
- `required = true`: the metric must be there. For `JOB:METRIC` the job part
  must match at least one job, and every job it matches must have a matching
  metric. For a bare `METRIC` at least one job must have it. A shard run
  (`--shard`) does not fail for what may sit in another shard.

A job that is not `ok` fails its gates: every rule whose job part matches it,
and every bare rule unless the baseline shows the same job, `ok`, without a
matching metric (so a failing data-prep notebook does not fail the `accuracy`
gate of a run whose baseline proves it never had one; without a baseline it
does, since nothing proves otherwise). A metric that is simply absent from an
`ok` job fails nothing unless `required`.
"""

from nbci.gates.evaluate import evaluate
from nbci.gates.rules import RULE_KEYS, Bound, GateRule, parse_gates

__all__ = ["RULE_KEYS", "Bound", "GateRule", "evaluate", "parse_gates"]
