"""Bring your own cluster: measured compute times in, a :class:`~stalegrad.spec.System` out.

:func:`read_records` reads tables of per-gradient records and stalegrad's Traces; :func:`fit_cluster` checks each
worker's series (:mod:`.checks`), groups the workers that share a law (:mod:`.classes`), fits each class by
maximum likelihood and chooses its law by AIC (:mod:`.laws`); :func:`write_system_file` writes the result, which
every command reads with ``--system FILE`` (:func:`read_system_file`).
"""

from __future__ import annotations

from .checks import Finding, check_series, check_workers
from .choice import GoodnessOfFit, SampleFit, fit_sample, goodness_of_fit
from .classes import group_workers, same_law_pvalue
from .cluster import ClusterFit, WorkerClass, fit_cluster
from .laws import FAMILIES, Law, Sample, fit_family
from .records import FIELDS, Records, parse_columns, read_records
from .system_file import document, read_system_file, write_system_file

__all__ = [
    "FAMILIES",
    "FIELDS",
    "ClusterFit",
    "Finding",
    "GoodnessOfFit",
    "Law",
    "Records",
    "Sample",
    "SampleFit",
    "WorkerClass",
    "check_series",
    "check_workers",
    "document",
    "fit_cluster",
    "fit_family",
    "fit_sample",
    "goodness_of_fit",
    "group_workers",
    "parse_columns",
    "read_records",
    "read_system_file",
    "same_law_pvalue",
    "write_system_file",
]
