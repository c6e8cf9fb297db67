"""Lightning callbacks of bridge-pl (rollout-accuracy histograms, per-step influence, completions).

Not to be confused with the unrelated PyPI package ``callbacks``: this package ships with ``bridge-pl``.
"""
