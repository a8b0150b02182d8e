"""Batch binarization of files, directories, globs and tar shards.

The error policy is the caller's (``handler=``): the library default raises; the CLI reports one line
per bad input, counts it and goes on, and exits non-zero at the end. Outputs are written atomically and
existing ones are skipped unless ``overwrite``, so a killed batch resumes where it stopped. Every entry
point — files (:mod:`.files`), shards (:mod:`.shards`), OCR-D, Ray, the HTTP service — sends a page through
the same trip (:mod:`.page`).
"""

from __future__ import annotations

from .claims import Claims
from .common import PAGE_ERRORS, ErrorHandler, Options, Summary, error_message, raise_error, reporting_handler
from .files import FileTask, binarize_files, run_file, write_bytes
from .inputs import CLAIMS_DIR, Found, Job, check_file_outputs, collect_inputs, find_inputs, output_paths
from .page import Encoded, binarize_page, encode_binary, encode_prob, encode_training
from .report import Report, plot_confidence, read_report, summarize
from .shards import ERROR_KEY, binarize_sample, binarize_shards, plan_shards, run_sample, shard_outputs
from .workers import BinarizerSpec, Runner, cpu_count, default_workers

__all__ = [
    "CLAIMS_DIR", "ERROR_KEY", "PAGE_ERRORS", "BinarizerSpec", "Claims", "Encoded", "ErrorHandler", "FileTask",
    "Found", "Job", "Options", "Report", "Runner", "Summary", "binarize_files", "binarize_page", "binarize_sample",
    "binarize_shards", "check_file_outputs", "collect_inputs", "cpu_count", "default_workers", "encode_binary",
    "encode_prob", "encode_training", "error_message", "find_inputs", "output_paths", "plan_shards",
    "plot_confidence", "raise_error", "read_report", "reporting_handler", "run_file", "run_sample",
    "shard_outputs", "summarize", "write_bytes",
]
