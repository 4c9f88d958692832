"""Aligning two lists of texts (the code cells' sources of the baseline and this run) with the
standard library's difflib, the way nbdime (the Jupyter project's notebook differ) does.

Equal texts are aligned first (`difflib.SequenceMatcher`: the longest run of equal texts,
then the same on either side of it). A text of this run equal to one of the baseline's that
the runs did not align is `moved`. Between the runs, texts are paired in order by similarity
(`edited`); what is left is `removed` (the baseline's) or `added` (this run's). Texts that
are aligned as equal are left out of the result.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from difflib import SequenceMatcher

from nbci.model import CellChangeKind

SIMILAR = 0.7
"""How alike two texts must be (more than this) to be an edit of one another: nbdime's
threshold."""
SHORT = 10
"""Two texts both shorter than this (characters, neither empty) are similar, as in nbdime:
a one-word cell replaced by another at the same place is an edit of it."""
_TOKEN = re.compile(r"\w+|\S")

Step = tuple[CellChangeKind, int | None, int | None]
"""(kind, the baseline's index, this run's index), None for the side it is not on."""


def align(
    base: Sequence[str], head: Sequence[str], *, equal: bool = True, compared: int = 0
) -> list[Step]:
    """The texts of both lists that are not aligned as equal, in this run's order (the
    baseline's where they were, before this run's at the same place).

    `equal`: align equal texts (else every text is left over, but for moves). `compared`: the
    pairs of texts that may be compared for similarity (a gap's baseline texts × this run's,
    gap after gap); a gap past that has its texts removed and added.
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
        if len(ours) * len(theirs) <= compared:
            compared -= len(ours) * len(theirs)
            pairs = similar_pairs(base, head, ours, theirs)
        b, h = i1, j1
        for pair_b, pair_h in [*pairs, (i2, j2)]:
            steps += [("removed", k, None) for k in range(b, pair_b) if k not in moved_from]
            steps += [_added(k, moved) for k in range(h, pair_h)]
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


def similar_pairs(
    base: Sequence[str], head: Sequence[str], ours: Sequence[int], theirs: Sequence[int]
) -> list[tuple[int, int]]:
    """Pairs (the baseline's index, this run's) of similar texts among `ours` and `theirs`,
    in order on both sides: as many pairs as can be, the most alike of those.

    Time grows with len(ours) × len(theirs): the caller bounds it.
    """
    if not ours or not theirs:
        return []
    our_bags, their_bags = [_bag(base[i]) for i in ours], [_bag(head[j]) for j in theirs]
    n, m = len(ours), len(theirs)
    # best[i][j]: (pairs, likeness) of the best pairing of ours[i:] with theirs[j:]
    best = [[(0, 0.0)] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            score = max(best[i + 1][j], best[i][j + 1])
            alike = _similarity(base[ours[i]], head[theirs[j]], our_bags[i], their_bags[j])
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


Bag = tuple[Counter[str], int]
"""A text's tokens (words, numbers, every other character but spaces) counted, and how many."""


def _bag(text: str) -> Bag:
    tokens = Counter(_TOKEN.findall(text))
    return tokens, sum(tokens.values())


def _similarity(a: str, b: str, a_bag: Bag, b_bag: Bag) -> float | None:
    """How alike two texts are, 0 to 1: the share of their tokens they have in common, in
    any order (difflib's `quick_ratio`, over tokens rather than characters: linear time, and
    an edit of a word changes one token); None when they are not similar (`SIMILAR`,
    `SHORT`)."""
    if not a or not b:
        return None
    (a_tokens, a_count), (b_tokens, b_count) = a_bag, b_bag
    total = a_count + b_count
    short = len(a) < SHORT and len(b) < SHORT
    if not short and 2 * min(a_count, b_count) <= SIMILAR * total:
        return None  # too different in length to be similar
    shared = sum((a_tokens & b_tokens).values())
    likeness = 2 * shared / total if total else 1.0
    return likeness if short or likeness > SIMILAR else None
