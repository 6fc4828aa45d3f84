"""Starter program: the primary endpoint of the crossover, read from the export as it is.

Run it in the unzipped bundle:   python analysis/primary.py [bundle folder]
Needs pandas and statsmodels (pip install pandas statsmodels).

It prints the mean % change of the fatigue VAS at D3 by treatment and period, fits the
crossover model (a mixed model with treatment, period and sequence as fixed effects and the
participant as a random effect) and the period-1-only comparison (the period-separated
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
except ImportError:  # the means above still stand
    print("MODEL skipped: statsmodels is not installed")
    sys.exit(0)

if model_data["participant_id"].nunique() >= 3 and model_data["arm"].nunique() == 2:
    fit = smf.mixedlm(
        "pct_change_d3 ~ C(arm) + C(period) + C(sequence)", model_data, groups=model_data["participant_id"]
    ).fit(reml=True)
    term = next(name for name in fit.params.index if name.startswith("C(arm)"))
    low, high = fit.conf_int().loc[term]
    print(
        f"MIXED term={term} estimate={fit.params[term]:.4f} ci_low={low:.4f} ci_high={high:.4f} "
        f"p={fit.pvalues[term]:.4f}"
    )
else:
    print("MIXED skipped: fewer than 3 complete participants or one arm only")

first = d3[d3["period"] == 1]
if first["arm"].nunique() == 2 and first.groupby("arm").size().min() >= 2:
    fit = smf.ols("pct_change_d3 ~ C(arm)", first).fit()
    term = next(name for name in fit.params.index if name.startswith("C(arm)"))
    print(f"PERIOD1 term={term} estimate={fit.params[term]:.4f} p={fit.pvalues[term]:.4f}")
else:
    print("PERIOD1 skipped: too few participants in period 1")
