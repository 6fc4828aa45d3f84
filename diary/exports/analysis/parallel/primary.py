"""Starter program: the primary endpoint of a parallel-group study, read from the export as it is.

Run it in the unzipped bundle:   python analysis/primary.py [bundle folder]
Needs pandas and statsmodels (pip install pandas statsmodels).

It prints the mean of the primary endpoint (pct_change_d3, as the protocol declares it) by arm,
the analysis of covariance (primary ~ arm + baseline) on the complete cases with a t-based 95%
interval, and Welch's two-sample t-test. Before unblinding the arm is the masked code, and for
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
endpoints["arm"] = endpoints["treatment"].fillna(endpoints["treatment_code"])
dummy = bool(endpoints["allocation_is_dummy"].astype(str).str.upper().eq("TRUE").any())
print(f"ALLOCATION {'dummy' if dummy else 'true'}")

data = endpoints.dropna(subset=["pct_change_d3"])
for arm, group in data.groupby("arm", sort=True):
    print(
        f"MEAN arm={arm} n={len(group)} mean={group['pct_change_d3'].mean():.4f} sd={group['pct_change_d3'].std():.4f}"
    )
print(f"COMPLETE participants={data['participant_id'].nunique()}")

try:
    import statsmodels.formula.api as smf
    from scipy import stats  # installed with statsmodels
except ImportError:  # the means above still stand
    print("MODEL skipped: statsmodels is not installed")
    sys.exit(0)

print("MODEL ANCOVA: complete cases, primary ~ arm + baseline_vas; t-based 95% CI")
if data["arm"].nunique() == 2 and len(data) >= 4:
    fit = smf.ols("pct_change_d3 ~ C(arm) + baseline_vas", data).fit()
    term = next(name for name in fit.params.index if name.startswith("C(arm)"))
    low, high = fit.conf_int().loc[term]
    print(
        f"ANCOVA term=arm{term.split('T.')[-1].rstrip(']')} estimate={fit.params[term]:.4f} ci_low={low:.4f} "
        f"ci_high={high:.4f} df={int(fit.df_resid)} p={fit.pvalues[term]:.4f}"
    )
    arms = sorted(data["arm"].unique())
    first, second = (data.loc[data["arm"] == arm, "pct_change_d3"] for arm in arms)
    welch = stats.ttest_ind(first, second, equal_var=False)
    print(f"WELCH estimate={first.mean() - second.mean():.4f} p={welch.pvalue:.4f}")
else:
    print("ANCOVA skipped: one arm only, or fewer than 4 participants with the primary endpoint")
