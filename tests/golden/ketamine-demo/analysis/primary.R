# Starter program: the primary endpoint of the crossover, read from the export as it is.
#
# Run it in the unzipped bundle:   Rscript analysis/primary.R [bundle folder]
# Uses base R; the mixed model needs the recommended package nlme.
#
# It prints the mean % change of the fatigue VAS at D3 by treatment and period, fits the
# crossover model (treatment, period and sequence fixed, participant random) on the complete
# cases and on all available data, with t-based 95% intervals, and the period-1-only comparison. Before unblinding the treatment is the masked code, and for blinded
# roles the allocation is a dummy (see allocation_is_dummy).

args <- commandArgs(trailingOnly = TRUE)
folder <- if (length(args) > 0) args[1] else {
  script <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
  if (length(script) == 1) dirname(dirname(normalizePath(script))) else "."
}

# Empty cells are missing values; TRUE/FALSE columns read as logical.
# Codes are read as text, so a code such as "T" or "F" never turns into a logical.
read <- function(name, codes) read.csv(file.path(folder, name), na.strings = "", stringsAsFactors = FALSE,
                                       colClasses = setNames(rep("character", length(codes)), codes))
endpoints <- read("fatigue_endpoints.csv", c("participant_id", "sequence", "treatment_code"))
participants <- read("participants.csv", c("participant_id", "sequence"))

endpoints$arm <- ifelse(is.na(endpoints$treatment), endpoints$treatment_code, endpoints$treatment)
cat(sprintf("ALLOCATION %s\n", if (any(endpoints$allocation_is_dummy)) "dummy" else "true"))

d3 <- endpoints[!is.na(endpoints$pct_change_d3), ]
for (arm in sort(unique(d3$arm))) {
  for (period in sort(unique(d3$period))) {
    cell <- d3$pct_change_d3[d3$arm == arm & d3$period == period]
    if (length(cell) == 0) next
    cat(sprintf("MEAN arm=%s period=%d n=%d mean=%.4f sd=%.4f\n", arm, period, length(cell), mean(cell),
                if (length(cell) > 1) sd(cell) else NA))
  }
}

complete <- participants$participant_id[participants$has_primary_both_periods]
model_data <- d3[d3$participant_id %in% complete, ]
cat(sprintf("COMPLETE participants=%d\n", length(unique(model_data$participant_id))))

# The primary analysis uses complete cases (both periods' D3); MIXEDALL uses every participant
# with any D3. nlme's intervals are t-based.
cat("MODEL MIXED: complete cases (D3 in both periods); MIXEDALL: all available D3 values; t-based 95% CI\n")
mixed <- function(data, label) {
  data$arm <- factor(data$arm)
  data$period <- factor(data$period)
  data$sequence <- factor(data$sequence)
  fit <- nlme::lme(pct_change_d3 ~ arm + period + sequence, random = ~ 1 | participant_id, data = data,
                   method = "REML")
  table <- summary(fit)$tTable
  term <- grep("^arm", rownames(table), value = TRUE)[1]
  ci <- nlme::intervals(fit, which = "fixed")$fixed
  cat(sprintf("%s term=%s estimate=%.4f ci_low=%.4f ci_high=%.4f df=%d p=%.4f\n", label, term, table[term, "Value"],
              ci[term, "lower"], ci[term, "upper"], as.integer(table[term, "DF"]), table[term, "p-value"]))
}
if (length(unique(model_data$participant_id)) >= 3 && length(unique(model_data$arm)) == 2 &&
    requireNamespace("nlme", quietly = TRUE)) {
  mixed(model_data, "MIXED")
} else {
  cat("MIXED skipped: fewer than 3 complete participants, one arm only, or nlme missing\n")
}
if (length(unique(d3$participant_id)) >= 3 && length(unique(d3$arm)) == 2 && length(unique(d3$period)) == 2 &&
    requireNamespace("nlme", quietly = TRUE)) {
  mixed(d3, "MIXEDALL")
} else {
  cat("MIXEDALL skipped: too few participants, or nlme missing\n")
}

first <- d3[d3$period == 1, ]
if (length(unique(first$arm)) == 2 && min(table(first$arm)) >= 2) {
  fit <- lm(pct_change_d3 ~ factor(arm), data = first)
  coefs <- summary(fit)$coefficients
  cat(sprintf("PERIOD1 term=%s estimate=%.4f p=%.4f\n", rownames(coefs)[2], coefs[2, 1], coefs[2, 4]))
} else {
  cat("PERIOD1 skipped: too few participants in period 1\n")
}
