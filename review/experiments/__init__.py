"""The statistics of experiments (issue 17): which copy works, measured honestly.

An experiment runs in one slot: the base copy as the control and up to ten approved
variants as arms, each with a traffic share. This package is the arithmetic behind it,
pure functions of counts and shares: no models, no queries, no I/O, no clock. The
models, the delivery path and the pages call it.

* `allocation`: the traffic shares (a fixed split, or Thompson sampling with a floor per
  arm and the control's share kept) and `pick_arm`, which gives a visitor the same arm
  every time by a stable hash and says with what probability it was served. Pure
  Python: the live path imports it, and it never loads numpy or scipy.
* `stats`: each arm against the control with always-valid (sequential) intervals and
  p-values, corrected across arms and segments; fixed-horizon results for reference;
  the Bayesian view (probability of being best, expected loss); the sample-ratio
  check; the decisions (loser, winner proposed, keep running); wear-out.
* `explain`: two sentences per method, for a lead, as the pages show them.

Counts are of independent trials: a visitor shown the copy ten times is ten exposures
to these functions, and the intervals are then too narrow. Count each visitor's first
exposure in the experiment (and their clicks after it) where the delivery log allows.
"""
