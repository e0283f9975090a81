"""City statistics and clinical-quality monitoring as pure logic.

Statistics: windows (window labels), stats_keys, counting (rules), exact_once (table writes),
rollups (API rows, snapshots), window_query (GET /stats/windows), sketch (latency quantiles).
Quality: auc, agreement (DeLong interval, sensitivity, specificity), review_windows,
review_join (reviews with Finding scores), quality_monitor (alert rules). Consumer lag: lag."""
