"""Loaders for the comparison baselines ("anchors") of the benchmarks.

Each loader returns the module / function, or calls ``pytest.skip(reason)`` when the anchor is not available,
so a bench can simply do::

    import anchors
    cc = anchors.causal_conv1d()          # skips the bench if causal-conv1d is missing
    fn = lambda: cc.causal_conv1d_fn(x, w, b, activation="silu")

Where the anchors come from (see bench/README.md):
- an installed package, if there is one (``pip install mamba-ssm`` etc.), else
- ``.anchors/`` in the repo root (``$MAMBA_KERNELS_ANCHORS`` overrides): ``src/`` holds the unpacked sdists
  (scripts/fetch_anchors.sh), ``site/`` pure-Python wheels unpacked (fla-core, einops), and ``build/`` the
  compiled extensions (scripts/build_anchors.sh, on the GPU host; ``$MAMBA_KERNELS_ANCHORS_BUILD`` overrides).

mamba_ssm is never imported through ``mamba_ssm/__init__.py`` (it imports selective_scan_cuda and the Mamba-3
modules, which need tilelang / quack-kernels): empty parent packages are registered in ``sys.modules`` with
``__path__`` pointing into the package folder, and the Triton submodules are imported directly.
"""
from __future__ import annotations

import glob
import importlib
import importlib.machinery
import importlib.util
import os
import sys
import types
import zipfile
from pathlib import Path

import pytest
import torch  # noqa: F401 - compiled extensions need libtorch loaded before them

REPO = Path(__file__).resolve().parents[1]
FETCH_HINT = "run scripts/fetch_anchors.sh (see bench/README.md)"
BUILD_HINT = "run scripts/build_anchors.sh on the GPU host (see bench/README.md)"


def anchors_dir() -> Path:
    return Path(os.environ.get("MAMBA_KERNELS_ANCHORS") or REPO / ".anchors")


def build_dir() -> Path:
    return Path(os.environ.get("MAMBA_KERNELS_ANCHORS_BUILD") or anchors_dir() / "build")


def _sdist(prefix: str) -> Path | None:
    """Newest unpacked sdist folder .anchors/src/<prefix>-*/ (None if absent)."""
    hits = sorted(glob.glob(str(anchors_dir() / "src" / f"{prefix}-*")))
    hits = [h for h in hits if os.path.isdir(h)]
    return Path(hits[-1]) if hits else None


def _add_site():
    """Append .anchors/site (unpacked pure-Python wheels) to sys.path, unpacking carried wheels if needed.

    Appended, not prepended: an installed package always wins over the carried copy.
    """
    site = anchors_dir() / "site"
    if not site.is_dir():
        wheels = glob.glob(str(anchors_dir() / "dist" / "*.whl"))
        wheels = [w for w in wheels if os.path.basename(w).startswith(("fla_core-", "einops-"))]
        if not wheels:
            return
        site.mkdir(parents=True, exist_ok=True)
        for w in wheels:
            with zipfile.ZipFile(w) as z:
                z.extractall(site)
    if str(site) not in sys.path:
        sys.path.append(str(site))
        importlib.invalidate_caches()


def _package_dir(name: str, sdist_prefix: str) -> Path | None:
    """Folder of package `name`: installed (found without importing it) or from the unpacked sdist."""
    mod = sys.modules.get(name)
    if mod is not None and getattr(mod, "__path__", None):
        return Path(list(mod.__path__)[0])
    try:
        spec = importlib.util.find_spec(name)  # top-level: locates, does not execute __init__
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    sd = _sdist(sdist_prefix)
    if sd is not None and (sd / name).is_dir():
        return sd / name
    return None


def _register_namespace(name: str, path: Path):
    """Put an empty package `name` with __path__ = [path] into sys.modules (its __init__.py is not run)."""
    mod = sys.modules.get(name)
    if mod is not None:
        return mod
    mod = types.ModuleType(name)
    spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
    spec.submodule_search_locations = [str(path)]
    mod.__spec__ = spec
    mod.__path__ = [str(path)]
    mod.__package__ = name
    mod.__file__ = None
    sys.modules[name] = mod
    if "." in name:
        parent, _, child = name.rpartition(".")
        setattr(sys.modules[parent], child, mod)
    return mod


def _load_extension(name: str):
    """The compiled extension `name`: already imported, installed, or built into .anchors/build."""
    if name in sys.modules:
        return sys.modules[name]
    try:
        return importlib.import_module(name)
    except ImportError:
        pass
    bdir = build_dir()
    sos = sorted(glob.glob(str(bdir / name / f"{name}*.so"))) or sorted(
        glob.glob(str(bdir / "**" / f"{name}*.so"), recursive=True))
    if not sos:
        pytest.skip(f"{name} is not built (no {name}*.so under {bdir}): {BUILD_HINT}")
    so = sos[0]
    marker = Path(so).parent / "BUILD_OK"
    if Path(so).parent.parent == bdir and not marker.exists():
        pytest.skip(f"{name}: {so} has no BUILD_OK marker (build still running or failed; see the build log)")
    try:
        spec = importlib.util.spec_from_file_location(name, so)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    except (ImportError, OSError) as exc:
        pytest.skip(f"{name}: cannot load {so}: {exc}")
    sys.modules[name] = mod
    return mod


# ------------------------------------------------------------------------------------------------ loaders
def mamba_ssm_triton():
    """mamba_ssm 2.3.2.post1's Triton ops, without running mamba_ssm/__init__.py.

    Returns a namespace with ``selective_state_update`` (decode, 1 token) and ``mamba_chunk_scan_combined``
    (SSD), plus the modules ``ssd_combined`` and ``ssu`` and ``path`` (the package folder).
    """
    _add_site()  # einops, if not installed
    pkg = _package_dir("mamba_ssm", "mamba_ssm")
    if pkg is None:
        pytest.skip(f"mamba_ssm not installed and no unpacked sdist under {anchors_dir() / 'src'}: {FETCH_HINT}")
    try:
        _register_namespace("mamba_ssm", pkg)
        _register_namespace("mamba_ssm.ops", pkg / "ops")
        _register_namespace("mamba_ssm.ops.triton", pkg / "ops" / "triton")
        _register_namespace("mamba_ssm.utils", pkg / "utils")
        ssu = importlib.import_module("mamba_ssm.ops.triton.selective_state_update")
        ssd = importlib.import_module("mamba_ssm.ops.triton.ssd_combined")
    except ImportError as exc:
        pytest.skip(f"mamba_ssm Triton ops from {pkg} cannot be imported: {exc}")
    return types.SimpleNamespace(selective_state_update=ssu.selective_state_update,
                                 mamba_chunk_scan_combined=ssd.mamba_chunk_scan_combined,
                                 ssu=ssu, ssd_combined=ssd, path=pkg)


def selective_scan_cuda():
    """mamba_ssm's compiled Mamba-1 scan extension ``selective_scan_cuda`` (``.fwd(...)`` / ``.bwd(...)``)."""
    return _load_extension("selective_scan_cuda")


def causal_conv1d():
    """causal-conv1d: the package with ``causal_conv1d_fn`` / ``causal_conv1d_update`` (and the compiled
    ``causal_conv1d_cuda`` it calls), installed or from the sdist + .anchors/build."""
    mod = sys.modules.get("causal_conv1d")
    if mod is not None and hasattr(mod, "causal_conv1d_fn"):
        return mod
    _load_extension("causal_conv1d_cuda")  # skips if unavailable; its Python interface imports it by name
    try:
        return importlib.import_module("causal_conv1d")  # installed
    except ImportError:
        sys.modules.pop("causal_conv1d", None)
    sd = _sdist("causal_conv1d")
    if sd is None or not (sd / "causal_conv1d" / "__init__.py").exists():
        pytest.skip(f"causal_conv1d not installed and no unpacked sdist under {anchors_dir() / 'src'}: "
                    f"{FETCH_HINT}")
    pkg = sd / "causal_conv1d"
    try:
        spec = importlib.util.spec_from_file_location("causal_conv1d", pkg / "__init__.py",
                                                      submodule_search_locations=[str(pkg)])
        mod = importlib.util.module_from_spec(spec)
        sys.modules["causal_conv1d"] = mod
        spec.loader.exec_module(mod)
    except ImportError as exc:
        sys.modules.pop("causal_conv1d", None)
        pytest.skip(f"causal_conv1d from {pkg} cannot be imported: {exc}")
    return mod


def fla_chunk_simple_gla():
    """fla's ``chunk_simple_gla`` (fla-core 0.6.0; the SSD equivalent: q=C, k=B, v=x*dt, g=A*dt, scale=1).

    Note: fla 0.6.0 refuses its backward on Hopper with Triton < 3.7.1 (fla #640); the forward runs.
    """
    try:
        from fla.ops.simple_gla import chunk_simple_gla
    except ImportError:
        for k in [k for k in sys.modules if k == "fla" or k.startswith("fla.")]:
            del sys.modules[k]
        _add_site()
        try:
            from fla.ops.simple_gla import chunk_simple_gla
        except ImportError as exc:
            pytest.skip(f"fla (fla-core) not importable: {exc}; {FETCH_HINT}")
    return chunk_simple_gla
