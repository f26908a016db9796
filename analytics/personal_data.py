"""Personal data held by this app (see privacy.registry): none.

Rollups are counts per period, site, dimension value and filter value; no
column identifies a visitor, so there is nothing to export or erase. Erasing a
subject's raw rows changes the counts of closed periods, which the reconcile job
rebuilds from what remains.
"""

EXEMPT = {
    "analytics.HourlyRollup": "aggregate counts per hour; no visitor identifier",
    "analytics.DailyRollup": "aggregate counts per day; no visitor identifier",
    "analytics.RollupPeriod": "bookkeeping of rollup runs; row counts only",
    "analytics.RollupWatermark": "bookkeeping of rollup runs",
}
