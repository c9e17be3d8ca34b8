"""Control adherence measures on readings whose answers are known."""

from __future__ import annotations

import numpy as np

from aurl.evaluate.adherence import Reading, adherence, request_score, shuffled, spearman
from aurl.generate.controls import ControlPlan
from aurl.tokens import TokenType

T = TokenType


def _reading(density: list[int], chords: list[set[int]], key: int = 2) -> Reading:
    d = np.array(density)
    return Reading({T.DENSITY: d, T.POLYPHONY: d, T.REGISTER: d}, chords, key)


def test_perfect_and_off_by_one_requests():
    plan = ControlPlan(key=2, bars={T.DENSITY: (1, 2, 3, 4), T.CHORD: (5, 7)})
    perfect = adherence([plan], [_reading([1, 2, 3, 4], [{5}, {7}, {5}, {7}])])
    assert perfect["density"] == {"exact": 1.0, "within_one": 1.0, "spearman": 1.0, "bars": 4}
    assert perfect["key"]["accuracy"] == 1.0 and perfect["chord_f1"]["f1"] == 1.0
    off = adherence([plan], [_reading([2, 3, 4, 5], [{5, 9}, set(), {1}, {7}], key=3)])
    assert off["density"]["exact"] == 0.0 and off["density"]["within_one"] == 1.0
    assert off["key"]["accuracy"] == 0.0
    assert off["chord_f1"]["f1"] == round((2 / 3 + 0 + 0 + 1) / 4, 4)  # hit among two, miss
    assert "polyphony" not in off  # not asked


def test_empty_bars_are_left_out_and_shuffles_are_derangements():
    plan = ControlPlan(bars={T.DENSITY: (3,)})
    out = adherence([plan], [_reading([3, -1, 3], [set()] * 3)])
    assert out["density"]["bars"] == 2
    plans = [ControlPlan(key=k) for k in range(7)]
    mixed = shuffled(plans, seed=3)
    assert sorted(p.key for p in mixed) == list(range(7))
    assert all(a.key != b.key for a, b in zip(plans, mixed, strict=True))


def test_spearman_ties_and_constants():
    assert spearman(np.array([1, 2, 3]), np.array([10, 20, 30])) == 1.0
    assert round(spearman(np.array([1, 2, 3, 4]), np.array([4, 3, 2, 1])), 6) == -1.0
    assert spearman(np.array([1, 1, 1]), np.array([1, 2, 3])) == 0.0
    assert 0.0 < spearman(np.array([1, 1, 2, 3]), np.array([1, 2, 2, 3])) < 1.0


def test_request_score_averages_the_controls_asked():
    plan = ControlPlan(key=2, bars={T.DENSITY: (1, 2, 3, 4), T.CHORD: (5, 7)})
    assert request_score(plan, _reading([1, 2, 3, 4], [{5}, {7}, {5}, {7}])) == 1.0
    # key wrong (0), chords F1 (2/3 + 0 + 0 + 1) / 4, density within one in 3 bars of 4
    off = _reading([2, 3, 4, 6], [{5, 9}, set(), {1}, {7}], key=3)
    expected = (0.0 + (2 / 3 + 1) / 4 + 0.75) / 3
    assert abs(request_score(plan, off) - expected) < 1e-9
    assert request_score(ControlPlan(), off) == 1.0  # nothing checkable asked
