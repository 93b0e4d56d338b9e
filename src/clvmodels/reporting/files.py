"""The files a run writes: the per-customer forecast (Parquet, optional CSV), the tier table and
other tables (CSV, formula-safe), the models and the parameters."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from clvmodels._text import write_csv
from clvmodels.reporting.config import ReportConfig

#: customers above which the per-customer forecast is written as a Parquet dataset partitioned
#: by tier (and, with forecast_csv "auto", without the CSV copy)
LARGE_FORECAST = 1_000_000




def save_artifacts(output_dir: str | Path, *, forecast: pd.DataFrame | None, tiers: pd.Series | None,
                   tier_table: pd.DataFrame, models: Mapping[str, Any], config: ReportConfig,
                   extra_tables: Mapping[str, pd.DataFrame] | None = None,
                   intervals: pd.DataFrame | None = None) -> list[Path]:
    """Write the per-customer forecast (with ``intervals`` when given), the tier table (CSV), the fitted models (JSON), further
    tables (CSV, e.g. the at-risk list) and the parameters into ``output_dir``. Does nothing
    when it is empty.

    The forecast is ``forecast.parquet``: one file up to :data:`LARGE_FORECAST` customers, above
    that a folder partitioned by tier (``forecast.parquet/tier=Gold/...``; ``pandas.read_parquet``
    reads either). ``forecast.csv`` is written when ``config.forecast_csv`` is "yes", or "auto"
    and the table is not large. ``forecast`` None: no per-customer files (an engine wrote them).
    """
    if not output_dir:
        return []
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [] if forecast is None else _save_forecast(out, forecast, tiers, intervals, config)
    write_csv(tier_table, out / "tier_table.csv")
    written.append(out / "tier_table.csv")
    for name, model in models.items():
        written.append(model.save(out / f"{name}.json"))
    for name, extra in (extra_tables or {}).items():
        write_csv(extra, out / f"{name}.csv")
        written.append(out / f"{name}.csv")
    params = out / "parameters.json"
    params.write_text(json.dumps(asdict(config), indent=2, default=str))
    written.append(params)
    return written


def _save_forecast(out: Path, forecast: pd.DataFrame, tiers: Any, intervals: pd.DataFrame | None,
                   config: ReportConfig) -> list[Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    large = len(forecast) > LARGE_FORECAST
    # an Arrow table built from the columns (no pandas copy of the whole forecast); tiers as a
    # dictionary column, not millions of Python strings
    tier_cat = pd.Categorical(tiers, categories=["Platinum", "Gold", "Iron", "Lead"], ordered=True)
    arrays = {forecast.index.name or "customer_id": pa.array(forecast.index.to_numpy())}
    arrays.update({c: pa.array(forecast[c].to_numpy()) for c in forecast.columns})
    if intervals is not None:  # per-customer intervals, indexed like the forecast
        arrays.update({c: pa.array(intervals[c].to_numpy()) for c in intervals.columns})
    arrays["tier"] = pa.DictionaryArray.from_arrays(pa.array(tier_cat.codes, pa.int8()),
                                                    pa.array(list(tier_cat.categories)))
    table = pa.table(arrays)
    written = [out / "forecast.parquet"]
    if large:
        import pyarrow.dataset as ds

        ds.write_dataset(table, str(written[0]), format="parquet", partitioning=["tier"],
                         partitioning_flavor="hive", max_rows_per_file=5_000_000,
                         existing_data_behavior="overwrite_or_ignore")
    else:
        pq.write_table(table, written[0])
    del table, arrays
    if config.forecast_csv == "yes" or (config.forecast_csv == "auto" and not large):
        both = forecast if intervals is None else forecast.join(intervals)
        write_csv(both.assign(tier=tier_cat), out / "forecast.csv")
        written.append(out / "forecast.csv")
    return written


