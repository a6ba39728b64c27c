"""Training along a timeline: problems, step-size policies, and SGD replayed along a Trace."""

from __future__ import annotations

from .problems import LinearRegression, Problem

__all__ = ["LinearRegression", "Problem"]
