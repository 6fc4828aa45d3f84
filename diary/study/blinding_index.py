"""Blinding indices of the participants' guesses (pure arithmetic, no database).

James et al. (Stat Med 1996;15:1421) give one index for the whole trial, from 0 (every guess
right: blinding lost) through 0.5 (as good as a coin) to 1 (everyone says "don't know");
Bang et al. (Control Clin Trials 2004;25:143) give one per arm, from -1 through 0 (random
guessing) to 1 (every guess right). Both are reported with a normal-theory confidence
interval, as in the R package BI. Counts are a 3 x 2 table: rows guess "first treatment",
guess "second treatment", "don't know"; columns the treatment actually given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z_95 = 1.959963984540054  # the standard normal's 97.5th percentile
# James's weights for a wrong and a right guess (a "don't know" weighs 1 through P_DK).
JAMES_WEIGHTS = ((0.0, 0.5), (0.5, 0.0))


@dataclass(frozen=True)
class Index:
    estimate: float
    se: float

    @property
    def ci(self) -> tuple[float, float]:
        return self.estimate - Z_95 * self.se, self.estimate + Z_95 * self.se


def james(counts: list[list[int]]) -> Index | None:
    """James's blinding index over both arms; None when no guess names a treatment."""
    total = sum(sum(row) for row in counts)
    if total == 0:
        return None
    p = [[cell / total for cell in row] for row in counts]
    rows = [sum(row) for row in p]
    dont_know = rows[2]
    named = [p[0][j] + p[1][j] for j in range(2)]  # guesses naming a treatment, per arm given
    if dont_know == 1:
        return Index(1.0, 0.0)
    w = JAMES_WEIGHTS
    expected_raw = sum(w[i][j] * rows[i] * named[j] for i in range(2) for j in range(2))
    if expected_raw == 0:
        return None
    observed = sum(w[i][j] * p[i][j] for i in range(2) for j in range(2)) / (1 - dont_know)
    expected = expected_raw / (1 - dont_know) ** 2
    kappa = (observed - expected) / expected
    estimate = (1 + dont_know + (1 - dont_know) * kappa) / 2
    numerator = 0.0
    for i in range(2):
        for j in range(2):
            extra = sum(w[r][j] * rows[r] + w[i][r] * named[r] for r in range(2))
            numerator += p[i][j] * (1 - dont_know) ** 2 * ((1 - dont_know) * w[i][j] - (1 + kappa) * extra) ** 2
    v1 = numerator / (4 * expected_raw**2)
    v2 = dont_know * (1 - dont_know) - (1 - dont_know) * (1 + kappa) * (dont_know + (1 - dont_know) * (1 + kappa) / 4)
    return Index(estimate, math.sqrt(max(0.0, (v1 + v2) / total)))


def bang(counts: list[list[int]], arm: int) -> Index | None:
    """Bang's blinding index in one arm (0 or 1): (right - wrong) guesses over everyone asked."""
    asked = counts[0][arm] + counts[1][arm] + counts[2][arm]
    if asked == 0:
        return None
    right, wrong = counts[arm][arm] / asked, counts[1 - arm][arm] / asked
    variance = (right * (1 - right) + wrong * (1 - wrong) + 2 * right * wrong) / asked
    return Index(right - wrong, math.sqrt(variance))
