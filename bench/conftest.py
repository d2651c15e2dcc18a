"""Benchmark fixtures: ``harness`` (timing + result rows, GPU only). See bench/README.md and bench/_harness.py.

Bench modules import the helpers by module name (this folder is put on sys.path here)::

    import anchors            # anchors.causal_conv1d(), anchors.mamba_ssm_triton(), ...
"""
import os
import sys

import pytest
import torch

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import _harness  # noqa: E402

_SESSION_HARNESS = None


@pytest.fixture(scope="session")
def harness():
    """Session-wide :class:`_harness.Harness`; skips the requesting bench when there is no CUDA device."""
    global _SESSION_HARNESS
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    if _SESSION_HARNESS is None:
        _SESSION_HARNESS = _harness.Harness()
    return _SESSION_HARNESS


def pytest_sessionfinish(session, exitstatus):
    """Write <results>/<gpu>-<date>.md from the day's JSONL (all runs of that day on that GPU)."""
    h = _SESSION_HARNESS
    if h is None or not h.rows:
        return
    try:
        md = h.write_summary()
    except Exception as exc:  # noqa: BLE001 - a summary problem must not hide the benchmark results
        print(f"\nbench: could not write the markdown summary: {exc!r}", file=sys.stderr)
        return
    if md is not None:
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        msg = f"bench results: {h.path} ; summary: {md}"
        if tr is not None:
            tr.write_line(msg)
        else:
            print(msg)
