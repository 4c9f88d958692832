"""Aligning two lists of texts (the code cells' sources of the baseline and this run) with the
standard library's difflib, the way nbdime (the Jupyter project's notebook differ) does.

Equal texts are aligned first (`difflib.SequenceMatcher`: the longest run of equal texts,
then the same on either side of it). A text of this run equal to one of the baseline's, both
left out of that alignment, is `moved`. In each gap between the runs of equal texts, the
others are paired in order by similarity (`edited`: more than 70% alike, nbdime's measure);
what is left is `removed` (the baseline's) or `added` (this run's). Texts aligned as equal
are left out of the result.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

from nbci.model import CellChangeKind

SIMILAR = 0.7
"""How alike two texts must be (more than this) to be an edit of one another: nbdime's
threshold."""
SHORT = 10
"""Two texts both shorter than this (characters, neither empty) are similar, as in nbdime:
a one-word cell replaced by another at the same place is an edit of it."""
MAX_MATCHED_CHARS = 2_500
"""Characters of a run of differing lines, one text's times the other's, that are matched
character by character (difflib's time grows with their product); a longer run is matched
by its words and symbols (in a short one, `lr = 0.01` → `lr = 0.001`, an edited word keeps
most of its characters)."""
_TOKEN = re.compile(r"\w+|\S")

Step = tuple[CellChangeKind, int | None, int | None]
"""(kind, the baseline's index, this run's index), None for the side it is not on."""


@dataclass
class Budget:
    """What may still be compared for similarity: pairs of texts, and their characters (both
    texts of every pair). Each comparison takes time in proportion to its characters."""

    pairs: int
    chars: int

    def spend(self, ours: Sequence[str], theirs: Sequence[str]) -> bool:
        """Whether each of `ours` may be compared with each of `theirs`: if so, it is spent."""
        pairs = len(ours) * len(theirs)
        chars = len(theirs) * sum(map(len, ours)) + len(ours) * sum(map(len, theirs))
        if pairs > self.pairs or chars > self.chars:
            return False
        self.pairs, self.chars = self.pairs - pairs, self.chars - chars
        return True


def align(
    base: Sequence[str], head: Sequence[str], *, equal: bool = True, budget: Budget | None = None
) -> list[Step]:
    """The texts of both lists that are not aligned as equal, in this run's order (the
    baseline's where they were, after this run's at the same place, as nbdime orders them).

    `equal`: align equal texts (else every text is left over, but for moves). `budget`: what
    may be compared for similarity, gap after gap (a gap's baseline texts × this run's); the
    texts of a gap past it (or all, without one) are removed and added.
    """
    if equal:
        matcher = SequenceMatcher(None, base, head, autojunk=False)
        gaps = [(i1, i2, j1, j2) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]
    else:
        gaps = [(0, len(base), 0, len(head))]
    moved = _moves(base, head, gaps)
    moved_from = set(moved.values())
    steps: list[Step] = []
    for i1, i2, j1, j2 in gaps:
        ours = [b for b in range(i1, i2) if b not in moved_from]
        theirs = [h for h in range(j1, j2) if h not in moved]
        pairs: list[tuple[int, int]] = []
        if budget is not None and budget.spend([base[b] for b in ours], [head[h] for h in theirs]):
            pairs = _similar_pairs(base, head, ours, theirs)
        b, h = i1, j1
        for pair_b, pair_h in [*pairs, (i2, j2)]:
            steps += [_added(k, moved) for k in range(h, pair_h)]
            steps += [("removed", k, None) for k in range(b, pair_b) if k not in moved_from]
            if pair_b < i2:
                steps.append(("edited", pair_b, pair_h))
            b, h = pair_b + 1, pair_h + 1
    return steps


def _added(h: int, moved: dict[int, int]) -> Step:
    return ("moved", moved[h], h) if h in moved else ("added", None, h)


def _moves(
    base: Sequence[str], head: Sequence[str], gaps: Sequence[tuple[int, int, int, int]]
) -> dict[int, int]:
    """This run's index → the baseline's, of equal texts left out of the alignment: each
    text of this run takes the first such one of the baseline's."""
    left: dict[str, list[int]] = {}
    for i1, i2, _, _ in gaps:
        for b in range(i1, i2):
            left.setdefault(base[b], []).append(b)
    for indices in left.values():
        indices.reverse()  # popped from the end: the first one first
    moved = {}
    for _, _, j1, j2 in gaps:
        for h in range(j1, j2):
            waiting = left.get(head[h])
            if waiting:
                moved[h] = waiting.pop()
    return moved


def _similar_pairs(
    base: Sequence[str], head: Sequence[str], ours: Sequence[int], theirs: Sequence[int]
) -> list[tuple[int, int]]:
    """Pairs (the baseline's index, this run's) of similar texts among `ours` and `theirs`,
    in order on both sides: as many pairs as can be, the most alike of those.

    Time grows with len(ours) × len(theirs), and their characters: `Budget` bounds it.
    """
    if not ours or not theirs:
        return []
    our_chars, their_chars = [Counter(base[i]) for i in ours], [Counter(head[j]) for j in theirs]
    n, m = len(ours), len(theirs)
    # best[i][j]: (pairs, likeness) of the best pairing of ours[i:] with theirs[j:]
    best = [[(0, 0.0)] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            score = max(best[i + 1][j], best[i][j + 1])
            alike = _similarity(base[ours[i]], head[theirs[j]], our_chars[i], their_chars[j])
            if alike is not None:
                pairs, likeness = best[i + 1][j + 1]
                score = max(score, (pairs + 1, likeness + alike))
            best[i][j] = score
    found = []
    i = j = 0
    while i < n and j < m:
        if best[i][j] == best[i + 1][j]:
            i += 1
        elif best[i][j] == best[i][j + 1]:
            j += 1
        else:
            found.append((ours[i], theirs[j]))
            i, j = i + 1, j + 1
    return found


def _similarity(a: str, b: str, a_chars: Counter[str], b_chars: Counter[str]) -> float | None:
    """How alike two texts are, 0 to 1, when they are similar (`SIMILAR`, `SHORT`): nbdime's
    measure, difflib's `ratio` of their characters (`_matched`), after its cheap bounds
    (lengths, then the characters they share in any order: `real_quick_ratio`,
    `quick_ratio`)."""
    if not a or not b:
        return None
    total = len(a) + len(b)
    if len(a) < SHORT and len(b) < SHORT:
        return 2 * _matched(a, b) / total
    if 2 * min(len(a), len(b)) <= SIMILAR * total:
        return None
    if 2 * sum((a_chars & b_chars).values()) <= SIMILAR * total:
        return None
    likeness = 2 * _matched(a, b) / total
    return likeness if likeness > SIMILAR else None


def _matched(a: str, b: str) -> int:
    """The characters of `a` that `b` has in the same order: equal lines whole, then in each
    run of differing lines those difflib matches, or, when the run is too long to match
    character by character (`MAX_MATCHED_CHARS`), the characters of the words and symbols
    both have."""
    a_lines, b_lines = a.splitlines(keepends=True), b.splitlines(keepends=True)
    matched = 0
    lines = SequenceMatcher(None, a_lines, b_lines, autojunk=False)
    for tag, i1, i2, j1, j2 in lines.get_opcodes():
        ours, theirs = "".join(a_lines[i1:i2]), "".join(b_lines[j1:j2])
        if tag == "equal":
            matched += len(ours)
        elif len(ours) * len(theirs) <= MAX_MATCHED_CHARS:
            chars = SequenceMatcher(None, ours, theirs, autojunk=False)
            matched += sum(block.size for block in chars.get_matching_blocks())
        else:
            shared = Counter(_TOKEN.findall(ours)) & Counter(_TOKEN.findall(theirs))
            matched += sum(len(token) * count for token, count in shared.items())
    return matched
