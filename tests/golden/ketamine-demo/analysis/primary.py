"""Starter program: the primary endpoint of the crossover, read from the export as it is.

Run it in the unzipped bundle:   python analysis/primary.py [bundle folder]
Needs pandas and statsmodels (pip install pandas statsmodels).

It prints the mean % change of the fatigue VAS at D3 by treatment and period, fits the
crossover model (a mixed model with treatment, period and sequence as fixed effects and the
participant as a random effect) on the complete cases (D3 in both periods) and on all available
data, with t-based 95% intervals, and the period-1-only comparison (the period-separated
analysis, free of carry-over). Before unblinding the treatment is the masked code, and for
blinded roles the allocation is a dummy (see allocation_is_dummy): the numbers then test the
program, not the drug.
"""

import sys
from pathlib import Path

import pandas as pd

folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent
# Empty cells are missing values; codes stay text (no "NA" or "true" guessing).
endpoints = pd.read_csv(
    folder / "fatigue_endpoints.csv",
    keep_default_na=False,
    na_values=[""],
    dtype={"participant_id": str, "sequence": str, "treatment_code": str, "treatment": str},
)
participants = pd.read_csv(
    folder / "participants.csv", keep_default_na=False, na_values=[""], dtype={"participant_id": str}
)

# The drug name once unblinded, the masked code before.
endpoints["arm"] = endpoints["treatment"].fillna(endpoints["treatment_code"])
dummy = bool(endpoints["allocation_is_dummy"].astype(str).str.upper().eq("TRUE").any())
print(f"ALLOCATION {'dummy' if dummy else 'true'}")

d3 = endpoints.dropna(subset=["pct_change_d3"])
for (arm, period), group in d3.groupby(["arm", "period"], sort=True):
    print(
        f"MEAN arm={arm} period={period} n={len(group)} mean={group['pct_change_d3'].mean():.4f} "
        f"sd={group['pct_change_d3'].std():.4f}"
    )

# Complete cases: the participants with the primary endpoint in both periods.
complete = participants.loc[
    participants["has_primary_both_periods"].astype(str).str.upper() == "TRUE", "participant_id"
]
model_data = d3[d3["participant_id"].isin(complete)]
print(f"COMPLETE participants={model_data['participant_id'].nunique()}")

try:
    import statsmodels.formula.api as smf
    from scipy import stats  # installed with statsmodels
except ImportError:  # the means above still stand
    print("MODEL skipped: statsmodels is not installed")
    sys.exit(0)


def mixed(data, label):
    """The crossover model on ``data``; the interval is t-based, not normal (with few participants
    a normal interval is too narrow), on nlme's degrees of freedom for a within-participant term:
    records - participants - 2 (participants - 2 with both periods, as for a 2x2 crossover)."""
    fit = smf.mixedlm("pct_change_d3 ~ C(arm) + C(period) + C(sequence)", data, groups=data["participant_id"]).fit(
        reml=True
    )
    term = next(name for name in fit.params.index if name.startswith("C(arm)"))
    df = len(data) - data["participant_id"].nunique() - 2
    half = stats.t.ppf(0.975, df) * fit.bse[term]
    estimate = fit.params[term]
    p = 2 * stats.t.sf(abs(estimate / fit.bse[term]), df)
    print(
        f"{label} term={term} estimate={estimate:.4f} ci_low={estimate - half:.4f} ci_high={estimate + half:.4f} "
        f"df={df} p={p:.4f}"
    )


# The primary analysis uses complete cases (both periods' D3); the second line uses every
# participant with any D3, as the mixed model allows.
print("MODEL MIXED: complete cases (D3 in both periods); MIXEDALL: all available D3 values; t-based 95% CI")
if model_data["participant_id"].nunique() >= 3 and model_data["arm"].nunique() == 2:
    mixed(model_data, "MIXED")
else:
    print("MIXED skipped: fewer than 3 complete participants or one arm only")
if d3["participant_id"].nunique() >= 3 and d3["arm"].nunique() == 2 and d3["period"].nunique() == 2:
    mixed(d3, "MIXEDALL")
else:
    print("MIXEDALL skipped: too few participants")

first = d3[d3["period"] == 1]
if first["arm"].nunique() == 2 and first.groupby("arm").size().min() >= 2:
    fit = smf.ols("pct_change_d3 ~ C(arm)", first).fit()
    term = next(name for name in fit.params.index if name.startswith("C(arm)"))
    print(f"PERIOD1 term={term} estimate={fit.params[term]:.4f} p={fit.pvalues[term]:.4f}")
else:
    print("PERIOD1 skipped: too few participants in period 1")
