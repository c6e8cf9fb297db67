"""What decides the RL gain (paper_spec §E): rollout-accuracy histograms and per-step influence.

* `bridge_pl.analysis.accuracy`: alpha bins, histogram, informative mass, E[sqrt(alpha (1 - alpha))] (pure Python);
* `bridge_pl.analysis.influence`: per-sequence log-likelihood gradients, a count sketch, G+/G-/K+/K-, I(q) and
  their aggregation per alpha bin (torch);
* `bridge_pl.analysis.probe`: rollouts of a probe set with any engine and their outcome per prompt;
* `bridge_pl.analysis.plots`: the figures (matplotlib, optional).
"""
