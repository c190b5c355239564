"""Helpers the benchmark summaries share: read every run's JSON report, take medians."""
import glob
import json
import os
import statistics


def load(out, pattern):
    """(path, report) for every file in `out` matching `pattern`, sorted by path."""
    runs = []
    for path in sorted(glob.glob(os.path.join(out, pattern))):
        with open(path) as f:
            runs.append((path, json.load(f)))
    return runs


def med(values):
    """Median of the values that are present; NaN when none are."""
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")
