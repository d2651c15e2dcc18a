"""Benchmark harness: CUDA-event timing, roofline floors from measured ceilings, JSONL results, markdown summary.

Used through the session fixture ``harness`` of bench/conftest.py::

    def bench_conv1d_fwd(benchmark, harness):
        x = torch.randn(4, 6144, 4096, device="cuda", dtype=torch.bfloat16)
        ...
        harness.measure(benchmark, kernel="conv1d_fwd", impl="mamba_kernels:cuda",
                        shape=dict(b=4, d=6144, l=4096, w=4), dtype="bfloat16",
                        fn=lambda: op(x, w), bytes=2 * x.numel() * 2)

What one ``measure`` does (about 0.3-0.5 s for kernels below a few ms):

1. On the first call of the session, measure the ceilings: device-to-device copy bandwidth (a 1 GiB tensor
   copied, so 2 GiB read + written per copy; median of 20) and the bf16 GEMM rate (8192^3 on random data,
   median of 20). Each becomes a result row (kernel "ceiling_copy" / "ceiling_bf16_gemm").
2. Time ``fn`` with CUDA events: one untimed call (compilation, autotuning), warm-up calls for >= 20 ms, then
   ``reps`` timed calls (>= 25 and ~100 ms of GPU time, at most 1000; fewer only for calls over 60 ms), one
   start/end event pair around each call; the result is the median. When ``fn`` costs the host more time
   than the GPU (small kernels), each batch of timed calls is preceded by a GPU spin (``torch.cuda._sleep``)
   so that the host has enqueued the calls before the GPU reaches them: the events then measure GPU time,
   not Python launch overhead (that is recorded separately as ``host_ms``). With ``graph=True`` ``fn`` is
   captured once in a ``torch.cuda.CUDAGraph`` (after warm-up on a side stream) and graph replays are timed.
   Nothing is flushed between calls unless ``flush_l2=True``: inputs smaller than L2 (50 MB on H100/H200)
   may be served from it.
3. Run pytest-benchmark on ``fn(); torch.cuda.synchronize()`` (wall-clock, includes launch + sync) and put the
   CUDA-event figures in ``benchmark.extra_info``.
4. Append one JSON row to ``<results dir>/<gpu-slug>-<YYYY-MM-DD>.jsonl`` (flushed at once). The results dir is
   bench/results, or ``$MAMBA_KERNELS_BENCH_DIR``. bench/conftest.py writes ``<same stem>.md`` at session end.

Row keys: kernel, impl, shape, dtype, ms, stat, ms_median, ms_mean, ms_min, ms_p90, reps, host_ms, floor_ms,
mem_floor_ms, compute_floor_ms, frac_of_floor, gbps, tflops, bytes, flops, graph, flush_l2, note, gpu, commit, date,
torch, triton, cuda, ceil_copy_gbps, ceil_gemm_tflops, test, plus the keys of ``extra``.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import statistics
import subprocess
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS_DIR = REPO / "bench" / "results"

# shape letters in the order the summary prints them (see docs: b batch, l length, d channels, h heads,
# p head dim, n state size, g groups, k draft tokens, w conv width); other keys follow, sorted
SHAPE_ORDER = "bldhpngkw"
ANCHOR_EXCLUDED = ("ref",)


# ----------------------------------------------------------------------------------------------- helpers
def gpu_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"


def git_commit(repo: Path = REPO) -> str:
    """Short HEAD hash, with "-dirty" if tracked files changed; $MAMBA_KERNELS_COMMIT wins (for copies of the
    tree without .git, e.g. on a GPU host); "unknown" outside a git checkout."""
    env = os.environ.get("MAMBA_KERNELS_COMMIT")
    if env:
        return env
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict:
    try:
        import triton
        triton_version = triton.__version__
    except Exception:  # noqa: BLE001 - triton missing or broken: record that, do not fail the bench
        triton_version = None
    return {"torch": torch.__version__, "triton": triton_version, "cuda": torch.version.cuda}


def shape_str(shape: dict) -> str:
    """dict(b=4, d=6144, l=4096) -> "b4-l4096-d6144" (known letters in SHAPE_ORDER, others sorted after)."""
    keys = [k for k in SHAPE_ORDER if k in shape] + sorted(k for k in shape if k not in SHAPE_ORDER)
    return "-".join(f"{k}{shape[k]}" for k in keys)


def dtype_str(dtype) -> str:
    return str(dtype).replace("torch.", "")


def _median(xs):
    return float(statistics.median(xs))


def _quantile(xs, q):
    s = sorted(xs)
    return float(s[min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))])


# ------------------------------------------------------------------------------------------------ harness
class Harness:
    """One per pytest session (bench/conftest.py creates it). See the module docstring."""

    # timing policy
    TARGET_MS = 100.0   # GPU time spent on timed reps
    MIN_REPS = 25
    MAX_REPS = 1000
    MAX_MEASURE_MS = 1500.0  # fewer than MIN_REPS reps only when MIN_REPS calls would exceed this
    WARMUP_MS = 20.0
    BATCH = 20          # timed calls enqueued behind one GPU spin
    BENCH_WALL_MS = 150.0  # budget for pytest-benchmark's own rounds

    def __init__(self, results_dir=None, *, device="cuda", copy_bytes: int | None = None, gemm_n: int = 8192,
                 now: _dt.datetime | None = None):
        self.device = torch.device(device)
        self.gpu = torch.cuda.get_device_name(self.device)
        env_dir = os.environ.get("MAMBA_KERNELS_BENCH_DIR")
        self.results_dir = Path(results_dir or env_dir or DEFAULT_RESULTS_DIR)
        now = now or _dt.datetime.now(_dt.timezone.utc)
        self.day = now.date().isoformat()
        self.path = self.results_dir / f"{gpu_slug(self.gpu)}-{self.day}.jsonl"
        self.commit = git_commit()
        self.versions = versions()
        self._copy_bytes = copy_bytes
        self.gemm_n = gemm_n
        self.copy_bw = None    # bytes/s, read + written
        self.gemm_rate = None  # FLOP/s, bf16
        self._cycles_per_ms = None
        self._flush_buf = None
        self.rows: list[dict] = []

    # ------------------------------------------------------------------------------------------ ceilings
    def ensure_ceilings(self):
        """Measure the copy bandwidth and bf16 GEMM rate once per session and record them as rows."""
        if self.copy_bw is not None:
            return
        dev = self.device
        total = torch.cuda.get_device_properties(dev).total_memory
        nbytes = self._copy_bytes or min(1 << 30, total // 16)
        nbytes -= nbytes % 16
        src = torch.ones(nbytes // 4, dtype=torch.float32, device=dev)
        dst = torch.empty_like(src)
        t = self._time(lambda: dst.copy_(src), target_ms=50.0, min_reps=20, max_reps=100)
        moved = 2 * src.numel() * src.element_size()
        self.copy_bw = moved / (t["ms"] * 1e-3)
        del src, dst
        copy_row = dict(t, kernel="ceiling_copy", impl="torch", shape={}, dtype="float32", bytes=moved, flops=0,
                        note=f"dst.copy_(src), {nbytes / 2**30:.3g} GiB tensor; bytes = read + written")

        n = self.gemm_n
        a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
        b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
        c = torch.empty(n, n, device=dev, dtype=torch.bfloat16)
        t = self._time(lambda: torch.mm(a, b, out=c), target_ms=50.0, min_reps=20, max_reps=100)
        flops = 2 * n ** 3
        self.gemm_rate = flops / (t["ms"] * 1e-3)
        del a, b, c
        gemm_row = dict(t, kernel="ceiling_bf16_gemm", impl="torch", shape={}, dtype="bfloat16",
                        bytes=3 * n * n * 2, flops=flops, note=f"torch.mm {n}x{n}x{n}, random data")
        torch.cuda.empty_cache()

        for row in (copy_row, gemm_row):
            row.update(floor_ms=row["ms"], mem_floor_ms=None, compute_floor_ms=None, frac_of_floor=1.0,
                       graph=False, flush_l2=False)
            self._finish_row(row)
            self._write(row)

    # -------------------------------------------------------------------------------------------- timing
    def _sleep_cycles_per_ms(self):
        if self._cycles_per_ms is None:
            if not hasattr(torch.cuda, "_sleep"):
                self._cycles_per_ms = 0.0
            else:
                rates = []
                for _ in range(3):  # the first one warms up
                    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    s.record()
                    torch.cuda._sleep(1_000_000)
                    e.record()
                    e.synchronize()
                    rates.append(1_000_000 / max(s.elapsed_time(e), 1e-6))
                self._cycles_per_ms = _median(rates[1:])
        return self._cycles_per_ms

    def _gpu_spin(self, ms: float):
        cpm = self._sleep_cycles_per_ms()
        if cpm > 0 and ms > 0:
            torch.cuda._sleep(int(cpm * ms))

    def _flush(self):
        if self._flush_buf is None:
            self._flush_buf = torch.empty(256 << 20, dtype=torch.int8, device=self.device)
        self._flush_buf.zero_()

    def _time(self, fn, *, target_ms=None, min_reps=None, max_reps=None, flush_l2=False):
        """CUDA-event timing of fn(); returns dict(ms (the median), ms_mean, ms_min, ms_p90, reps, host_ms)."""
        target_ms = self.TARGET_MS if target_ms is None else target_ms
        min_reps = self.MIN_REPS if min_reps is None else min_reps
        max_reps = self.MAX_REPS if max_reps is None else max_reps
        Event = torch.cuda.Event

        fn()  # compile / autotune / lazy init, untimed
        torch.cuda.synchronize()

        # warm-up that also estimates the per-call GPU time and the host (launch) time per call
        # host_ms: the minimum over warm-up rounds (a long round may block on a full launch queue, which would
        # count GPU time as host time)
        n, spent, per_call, host_ms = 3, 0.0, 0.0, math.inf
        for _ in range(10):
            s, e = Event(enable_timing=True), Event(enable_timing=True)
            t0 = time.perf_counter()
            s.record()
            for _ in range(n):
                fn()
            e.record()
            host_ms = min(host_ms, (time.perf_counter() - t0) * 1e3 / n)
            e.synchronize()
            gpu = s.elapsed_time(e)
            per_call = max(gpu / n, 1e-4)
            spent += gpu
            if spent >= self.WARMUP_MS:
                break
            n = int(min(1000, max(2 * n, math.ceil((self.WARMUP_MS - spent) / per_call))))

        reps = int(min(max_reps, max(min_reps, math.ceil(target_ms / per_call))))
        if reps * per_call > self.MAX_MEASURE_MS:
            reps = max(5, int(self.MAX_MEASURE_MS / per_call))
        # If the host needs a noticeable fraction of the GPU time to launch one call, let the GPU spin while
        # the host enqueues each batch, so that the events time the GPU and not the Python launch path.
        spin = host_ms > 0.1 * per_call

        starts = [Event(enable_timing=True) for _ in range(reps)]
        ends = [Event(enable_timing=True) for _ in range(reps)]
        torch.cuda.synchronize()
        for i0 in range(0, reps, self.BATCH):
            nb = min(self.BATCH, reps - i0)
            if spin:
                # 2x the measured launch time + ~10 us per rep for the event records and the flush launch
                self._gpu_spin(min(50.0, nb * (2.0 * host_ms + 0.01 + (0.1 if flush_l2 else 0.0)) + 0.1))
            for i in range(i0, i0 + nb):
                if flush_l2:
                    self._flush()
                starts[i].record()
                fn()
                ends[i].record()
        torch.cuda.synchronize()
        times = [s.elapsed_time(e) for s, e in zip(starts, ends)]
        return dict(ms=_median(times), ms_mean=float(statistics.fmean(times)), ms_min=float(min(times)),
                    ms_p90=_quantile(times, 0.9), reps=reps,
                    host_ms=host_ms)

    @staticmethod
    def _graph(fn):
        """Capture fn in a CUDA graph after warm-up on a side stream; returns the graph (keep it alive)."""
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                fn()
        torch.cuda.current_stream().wait_stream(s)
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            fn()
        torch.cuda.synchronize()
        return g

    # ------------------------------------------------------------------------------------------- measure
    def measure(self, benchmark, *, kernel: str, impl: str, shape: dict, dtype, fn, bytes: int,  # noqa: A002
                flops: int = 0, floor_ms: float | None = None, graph: bool = False, note: str = "",
                extra: dict | None = None, flush_l2: bool = False, stat: str = "median") -> dict:
        """Time ``fn`` and record one result row; returns the row.

        benchmark: the pytest-benchmark fixture (or None to skip pytest-benchmark's own timing, e.g. for a
            second impl measured in the same test).
        kernel / impl: what is measured and whose implementation ("mamba_kernels:cuda", "mamba_kernels:triton",
            "ref", or an anchor name such as "mamba_ssm", "causal_conv1d", "fla").
        shape: dict of named sizes (letters b l d h p n g k w, see docs/conventions.md).
        dtype: str (or torch.dtype) of the main inputs.
        fn: zero-argument callable that launches the work (its result is discarded).
        bytes / flops: minimum bytes that must move through HBM and useful FLOPs.
        floor_ms: explicit floor (e.g. an exp-throughput floor); by default
            max(bytes / copy_bw, flops / gemm_rate).
        graph: time replays of a CUDA graph holding one call of fn.
        flush_l2: zero a 256 MiB buffer before each timed call (not timed) so inputs come from HBM.
        stat: what the row's ``ms`` is: "median" of the timed calls (the default), or "mean" for calls of uneven
            cost whose slow ones belong to the per-call cost (verify_step's periodic fold write-back: one call in
            several folds, so the median would be a call without it). Both are kept (ms_median, ms_mean); a mean
            row's note starts with "mean per call", which the summary's header refers to.
        """
        if not callable(fn):
            raise TypeError("fn must be a zero-argument callable")
        if not isinstance(shape, dict):
            raise TypeError("shape must be a dict such as dict(b=4, l=4096, d=6144)")
        if stat not in ("median", "mean"):
            raise ValueError(f"stat must be 'median' or 'mean', got {stat!r}")
        self.ensure_ceilings()
        nbytes, flops = int(bytes), int(flops)

        g = self._graph(fn) if graph else None
        timed = g.replay if graph else fn
        t = self._time(timed, flush_l2=flush_l2)
        t.update(ms_median=t["ms"], stat=stat)
        if stat == "mean":
            t["ms"] = t["ms_mean"]
            note = "mean per call" + ("; " + note if note else "")

        mem_floor = nbytes / self.copy_bw * 1e3
        compute_floor = flops / self.gemm_rate * 1e3
        explicit = floor_ms is not None
        floor = float(floor_ms) if explicit else max(mem_floor, compute_floor)
        ms = t["ms"]
        row = dict(t, kernel=kernel, impl=impl, shape=dict(shape), dtype=dtype_str(dtype), bytes=nbytes,
                   flops=flops, floor_ms=floor, mem_floor_ms=mem_floor, compute_floor_ms=compute_floor,
                   floor_explicit=explicit, frac_of_floor=floor / ms if ms > 0 else None, graph=bool(graph),
                   flush_l2=bool(flush_l2), note=note,
                   test=getattr(benchmark, "fullname", None) if benchmark is not None else None)
        self._finish_row(row)
        if extra:
            row.update(extra)
        self._write(row)

        if benchmark is not None:
            self._pytest_benchmark(benchmark, timed, row)
        del g
        return row

    def _pytest_benchmark(self, benchmark, timed, row):
        def sync_fn():
            timed()
            torch.cuda.synchronize()

        wall_est = max(row["ms"], row["host_ms"]) + 0.02
        rounds = int(min(50, max(5, self.BENCH_WALL_MS / wall_est)))
        try:
            benchmark.group = row["kernel"]
        except AttributeError:
            pass
        info = {k: row[k] for k in ("kernel", "impl", "dtype", "ms", "ms_min", "floor_ms", "frac_of_floor",
                                    "gbps", "tflops", "host_ms", "graph", "reps")}
        info["shape"] = shape_str(row["shape"])
        benchmark.extra_info.update(info)
        benchmark.pedantic(sync_fn, rounds=rounds, warmup_rounds=1, iterations=1)

    # ------------------------------------------------------------------------------------------- records
    def _finish_row(self, row):
        ms = row["ms"]
        row["gbps"] = row["bytes"] / (ms * 1e-3) / 1e9 if ms > 0 else None
        row["tflops"] = row["flops"] / (ms * 1e-3) / 1e12 if ms > 0 else None
        row.update(gpu=self.gpu, commit=self.commit,
                   date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **self.versions,
                   ceil_copy_gbps=self.copy_bw / 1e9 if self.copy_bw else None,
                   ceil_gemm_tflops=self.gemm_rate / 1e12 if self.gemm_rate else None)
        row.setdefault("test", None)

    def _write(self, row):
        self.results_dir.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(row, default=str) + "\n")
            f.flush()
        self.rows.append(row)

    def write_summary(self):
        if self.path.exists():
            return write_summary(self.path)
        return None


# ------------------------------------------------------------------------------------------------ summary
def _is_anchor(impl: str) -> bool:
    return not impl.startswith("mamba_kernels:") and impl not in ANCHOR_EXCLUDED


def _fmt(x, spec):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return format(x, spec)


def read_rows(jsonl_path) -> list[dict]:
    rows = []
    with open(jsonl_path) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut short by a killed run
    return rows


def latest_rows(rows: list[dict]) -> list[dict]:
    """Keep the last row per (kernel, impl, shape, dtype, graph, flush_l2, note), in first-seen order. A row of an A/B
    variant (commit "<sha>+<tag>", MAMBA_KERNELS_COMMIT set by a run script) counts as the impl "<impl> [<tag>]", so
    that it does not replace the default build's row."""
    by_key = {}
    for r in rows:
        commit = str(r.get("commit", ""))
        if "+" in commit:
            r = {**r, "impl": f"{r.get('impl')} [{commit.split('+', 1)[1]}]"}
        key = (r.get("kernel"), r.get("impl"), json.dumps(r.get("shape", {}), sort_keys=True), r.get("dtype"),
               bool(r.get("graph")), bool(r.get("flush_l2")), r.get("note", ""))
        by_key[key] = r  # a dict keeps the first insertion's position; the value becomes the latest row
    return list(by_key.values())


def summarize(rows: list[dict], source: str = "") -> str:
    rows = latest_rows(rows)
    if not rows:
        return "# Benchmarks\n\n(no results)\n"
    last = rows[-1]
    ceil_copy = [r for r in rows if r.get("kernel") == "ceiling_copy"]
    ceil_gemm = [r for r in rows if r.get("kernel") == "ceiling_bf16_gemm"]
    gpus = sorted({r.get("gpu", "?") for r in rows})
    commits = list(dict.fromkeys(r.get("commit", "unknown") for r in rows))
    dates = sorted(r.get("date", "") for r in rows)
    lines = [f"# Benchmarks: {', '.join(gpus)}", ""]
    lines.append(f"- GPU: {', '.join(gpus)}; torch {last.get('torch')}, triton {last.get('triton')}, "
                 f"CUDA {last.get('cuda')}")
    lines.append(f"- commit: {', '.join(commits)}")
    lines.append(f"- date: {dates[0]} .. {dates[-1]}" if dates and dates[0] != dates[-1] else
                 f"- date: {dates[0] if dates else '?'}")
    cc = f"{ceil_copy[-1]['gbps']:.0f} GB/s (device-to-device copy, bytes read + written)" if ceil_copy else "?"
    cg = f"{ceil_gemm[-1]['tflops']:.0f} TFLOP/s (bf16 GEMM, {ceil_gemm[-1].get('note', '')})" if ceil_gemm else "?"
    lines.append(f"- ceilings: copy {cc}; {cg}")
    lines.append("- floor = max(bytes / copy ceiling, FLOPs / GEMM ceiling) unless a bench sets it; "
                 "frac = floor / ms (1.0 = at the roofline); ms = median of CUDA-event timings "
                 "(graph: CUDA-graph replays), or their mean where the note says \"mean per call\"")
    if source:
        lines.append(f"- source: {source} ({len(rows)} distinct measurements)")
    lines.append("")

    kernels = list(dict.fromkeys(r["kernel"] for r in rows if not str(r["kernel"]).startswith("ceiling_")))
    for kernel in kernels:
        krows = [r for r in rows if r["kernel"] == kernel]
        shapes = list(dict.fromkeys(shape_str(r.get("shape", {})) for r in krows))
        order = {s: i for i, s in enumerate(shapes)}

        def impl_rank(impl):
            return 0 if impl.startswith("mamba_kernels:") else (2 if impl in ANCHOR_EXCLUDED else 1)

        krows.sort(key=lambda r: (order[shape_str(r.get("shape", {}))], r.get("dtype", ""), bool(r.get("graph")),
                                  impl_rank(r["impl"]), r["impl"]))
        lines += [f"## {kernel}", "",
                  "| impl | shape | dtype | graph | ms | floor ms | frac | GB/s | TFLOP/s | speedup vs anchors | note |",
                  "|---|---|---|---|---:|---:|---:|---:|---:|---|---|"]
        for r in krows:
            speed = ""
            if not _is_anchor(r["impl"]) and r["impl"] not in ANCHOR_EXCLUDED:
                parts = []
                for a in krows:
                    if (_is_anchor(a["impl"]) and shape_str(a.get("shape", {})) == shape_str(r.get("shape", {}))
                            and a.get("dtype") == r.get("dtype") and bool(a.get("graph")) == bool(r.get("graph"))
                            and bool(a.get("flush_l2")) == bool(r.get("flush_l2")) and r["ms"] > 0):
                        label = a["impl"] + (f" ({a['note']})" if a.get("note") else "")
                        parts.append(f"{a['ms'] / r['ms']:.2f}× {label}")
                speed = "; ".join(parts)
            flags = "yes" if r.get("graph") else ""
            if r.get("flush_l2"):
                flags = (flags + " " if flags else "") + "L2 flushed"
            floor = _fmt(r.get("floor_ms"), ".4g") + ("*" if r.get("floor_explicit") else "")
            lines.append(f"| {r['impl']} | {shape_str(r.get('shape', {}))} | {r.get('dtype', '')} | {flags} | "
                         f"{_fmt(r.get('ms'), '.4g')} | {floor} | {_fmt(r.get('frac_of_floor'), '.2f')} | "
                         f"{_fmt(r.get('gbps'), '.0f')} | "
                         f"{_fmt(r.get('tflops') if r.get('flops') else None, '.1f')} | {speed} | "
                         f"{str(r.get('note', '')).replace('|', '/')} |")
        lines.append("")
    if any(r.get("floor_explicit") for r in rows):
        lines.append("\\* floor set by the bench (e.g. an exp-throughput floor); the memory floor is in the "
                     "JSONL as mem_floor_ms.")
        lines.append("")
    return "\n".join(lines)


def write_summary(jsonl_path, md_path=None) -> Path:
    jsonl_path = Path(jsonl_path)
    md_path = Path(md_path) if md_path else jsonl_path.with_suffix(".md")
    text = summarize(read_rows(jsonl_path), source=jsonl_path.name)
    md_path.write_text(text)
    return md_path
