# Starter program: the primary endpoint of a parallel-group study, read from the export as it is.
#
# Run it in the unzipped bundle:   Rscript analysis/primary.R [bundle folder]
# Uses base R only.
#
# It prints the mean of the primary endpoint (pct_change_d3, as the protocol declares it) by arm,
# the analysis of covariance (primary ~ arm + baseline) on the complete cases with a t-based 95%
# interval, and Welch's two-sample t-test. Before unblinding the arm is the masked code, and for
# blinded roles the allocation is a dummy (see allocation_is_dummy).

args <- commandArgs(trailingOnly = TRUE)
folder <- if (length(args) > 0) args[1] else {
  script <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
  if (length(script) == 1) dirname(dirname(normalizePath(script))) else "."
}

# Empty cells are missing values; TRUE/FALSE columns read as logical; codes stay text.
read <- function(name, codes) read.csv(file.path(folder, name), na.strings = "", stringsAsFactors = FALSE,
                                       colClasses = setNames(rep("character", length(codes)), codes))
endpoints <- read("fatigue_endpoints.csv", c("participant_id", "sequence", "treatment_code"))
endpoints$arm <- ifelse(is.na(endpoints$treatment), endpoints$treatment_code, endpoints$treatment)
cat(sprintf("ALLOCATION %s\n", if (any(endpoints$allocation_is_dummy)) "dummy" else "true"))

data <- endpoints[!is.na(endpoints$pct_change_d3), ]
for (arm in sort(unique(data$arm))) {
  cell <- data$pct_change_d3[data$arm == arm]
  cat(sprintf("MEAN arm=%s n=%d mean=%.4f sd=%.4f\n", arm, length(cell), mean(cell),
              if (length(cell) > 1) sd(cell) else NA))
}
cat(sprintf("COMPLETE participants=%d\n", length(unique(data$participant_id))))

cat("MODEL ANCOVA: complete cases, primary ~ arm + baseline_vas; t-based 95% CI\n")
if (length(unique(data$arm)) == 2 && nrow(data) >= 4) {
  data$arm <- factor(data$arm)
  fit <- lm(pct_change_d3 ~ arm + baseline_vas, data = data)
  coefs <- summary(fit)$coefficients
  term <- grep("^arm", rownames(coefs), value = TRUE)[1]
  ci <- confint(fit)[term, ]
  cat(sprintf("ANCOVA term=%s estimate=%.4f ci_low=%.4f ci_high=%.4f df=%d p=%.4f\n", term, coefs[term, 1],
              ci[1], ci[2], as.integer(fit$df.residual), coefs[term, 4]))
  test <- t.test(pct_change_d3 ~ arm, data = data)
  cat(sprintf("WELCH estimate=%.4f p=%.4f\n", -diff(test$estimate), test$p.value))
} else {
  cat("ANCOVA skipped: one arm only, or fewer than 4 participants with the primary endpoint\n")
}
