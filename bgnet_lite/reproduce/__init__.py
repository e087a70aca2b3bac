"""Reproducing the paper's Tables 1-3 and the robustness curve: specs, runner, report
(chapters 11-13)."""

from bgnet_lite.reproduce.report import format_table, paper_values, summarize
from bgnet_lite.reproduce.runner import (
    dry_run,
    read_results,
    results_path,
    run_table,
    table_cells,
)
from bgnet_lite.reproduce.specs import TABLES, moderate_variation

__all__ = ["TABLES", "dry_run", "format_table", "moderate_variation", "paper_values",
           "read_results", "results_path", "run_table", "summarize", "table_cells"]
