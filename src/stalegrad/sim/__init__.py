"""Simulators of the system's timing. Each returns a Trace (or a streamed Summary)."""

from __future__ import annotations

from .fast import prepare, simulate, simulate_summary

__all__ = ["prepare", "simulate", "simulate_summary"]
