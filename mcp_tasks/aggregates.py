"""Log-scale histograms of task times, as the stores maintain them (storage/<dialect>/migrations:
the aggregates), and the percentiles read from them.

The database keeps, per type and per agent, how many DONE tasks took a cycle or work time in each
bucket: bucket b holds times from RATIO**b up to RATIO**(b + 1) seconds. A percentile is then
estimated from the counts: it is `charts.quantile` of the times each moved to its bucket's middle
(RATIO**(b + 0.5)), so it is within ESTIMATE_ERROR of the percentile of the times themselves.
Times below MIN_TIME count as MIN_TIME.

The store's SQL computes the bucket as `floor(ln(max(t, MIN_TIME)) / ln(RATIO))`; `bucket_of` is
the same formula, for whoever recomputes the histograms from the rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

RATIO = 1.05
MIN_TIME = 0.001  # seconds
ESTIMATE_ERROR = math.sqrt(RATIO) - 1  # 2.5%


def bucket_of(seconds: float) -> int:
    """The histogram bucket of a time, as the stores' triggers compute it."""
    return math.floor(math.log(max(seconds, MIN_TIME)) / math.log(RATIO))


def bucket_middle(bucket: int) -> float:
    """The time that stands for every time in `bucket`: the geometric middle of its bounds."""
    return float(RATIO ** (bucket + 0.5))


def histogram_quantile(counts: Mapping[int, int], q: float) -> float | None:
    """The `q` quantile (0..1) of the times counted in `counts` (bucket -> how many), estimated as
    `charts.quantile` of their buckets' middles (None when nothing is counted)."""
    total = sum(n for n in counts.values() if n > 0)
    if total == 0:
        return None
    k = (total - 1) * q
    lo, hi = int(k), min(int(k) + 1, total - 1)
    found: dict[int, float] = {}
    seen = 0
    for bucket in sorted(b for b, n in counts.items() if n > 0):
        seen += counts[bucket]
        for rank in (lo, hi):
            if rank not in found and rank < seen:
                found[rank] = bucket_middle(bucket)
        if hi in found:
            break
    return found[lo] + (found[hi] - found[lo]) * (k - lo)
