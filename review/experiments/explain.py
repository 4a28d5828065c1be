"""Each method in two sentences, for a lead: the pages show these beside the figures.

Plain words, no formulas; review/experiments/stats.py has the method in full.
"""

RANDOMIZATION = (
    "Each visitor is assigned to a copy by a fixed scramble of the experiment and their "
    "id, so they see the same copy on every visit and every server while the split "
    "stays as it is (a bandit that shrinks an arm's share moves some of its visitors). "
    "Each exposure records which copy was shown and with what probability."
)
FIXED_SPLIT = (
    "Traffic is split between the copies in shares set when the experiment starts and "
    "never moved. It is the simplest design to trust, at the price of showing weaker "
    "copy as often as stronger copy until the experiment ends."
)
THOMPSON = (
    "At a set cadence (every 15 minutes by default), each copy's share of traffic is set "
    "to its current chance of being the best, so better copy is shown more while the "
    "experiment still learns. "
    "Every copy keeps a small floor share and the base copy keeps its own share, so "
    "a slow starter can recover and the comparison with the base copy goes on."
)
SEQUENTIAL = (
    "The interval and p-value are built to stay valid however often you look, so "
    "checking the page every hour does not make a chance difference look real. They "
    "are a little wider than a one-look test's, which is the price of that freedom."
)
ADAPTIVE = (
    "When traffic follows the results, a copy that starts unluckily is shown less and "
    "keeps its unlucky look for longer, which can make an equal copy seem worse than the "
    "base copy. So these experiments compare each copy's own always-valid interval with "
    "the base copy's, which stays honest however traffic was steered but needs more "
    "data to reach a verdict."
)
FIXED_HORIZON = (
    "This is the classic test, valid only if you look once, at a sample size fixed in "
    "advance. Shown for reference: checked every hour it declares far more false "
    "winners than its 5% promises."
)
HOLM = (
    "With several copies, and several segments, one of them will look different by "
    "luck alone, so each p-value is adjusted for the number of comparisons made "
    "together. Holm's correction keeps the chance of even one false verdict in the "
    "whole set below 5%."
)
BENJAMINI_HOCHBERG = (
    "With several copies and segments, each p-value is adjusted for the number of "
    "comparisons made together. Benjamini-Hochberg's correction keeps the expected "
    "share of false verdicts among the verdicts of each look below 5%, which finds "
    "more real differences than Holm's but allows the odd false one over many looks."
)
PROBABILITY_BEST = (
    "Given the clicks so far, this is the chance that each copy truly has the highest "
    "rate, base copy included. It reads naturally, but looked at every hour it also "
    "drifts past 95% by luck, so a winner is proposed only when the sequential test "
    "agrees."
)
EXPECTED_LOSS = (
    "This is how much rate you would expect to give up by choosing this copy, if "
    "another one is in fact better. A copy with a tiny expected loss is a safe choice "
    "even when the experiment is not conclusive."
)
SAMPLE_RATIO = (
    "This checks that each copy received the share of traffic it was meant to, with a "
    "chi-squared test that fires below a 0.1% p-value. When it fires something in "
    "delivery or logging is broken, so the figures cannot be trusted and no copy is "
    "paused or promoted until it is fixed."
)
LOSER = (
    "A copy is paused when it is worse than the base copy by the corrected sequential "
    "test, however often the page was checked. Its traffic goes to the other copies."
)
WINNER = (
    "A copy is proposed for promotion when it beats the base copy by the corrected "
    "sequential test, has at least a 95% chance of being the best, and every copy has "
    "enough exposures. A person decides whether to promote it."
)
WEAR_OUT = (
    "This looks at each day's click-through of a copy against the base copy on the "
    "same day, and tests whether the gap is shrinking over time. Copy that wears out "
    "is worth refreshing before it falls behind."
)

EXPLANATIONS: dict[str, str] = {
    "randomization": RANDOMIZATION,
    "fixed_split": FIXED_SPLIT,
    "thompson": THOMPSON,
    "sequential": SEQUENTIAL,
    "adaptive": ADAPTIVE,
    "fixed_horizon": FIXED_HORIZON,
    "holm": HOLM,
    "fdr_bh": BENJAMINI_HOCHBERG,
    "probability_best": PROBABILITY_BEST,
    "expected_loss": EXPECTED_LOSS,
    "sample_ratio": SAMPLE_RATIO,
    "loser": LOSER,
    "winner": WINNER,
    "wear_out": WEAR_OUT,
}
