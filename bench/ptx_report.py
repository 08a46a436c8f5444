"""What ptxas makes of the Triton kernels at the tiles they run with, on a machine with no GPU.

Issue 12's kernels are timed only in rare GPU windows; between them, this compiles every
kernel (variant 1's ``GPU_PICKS`` configs, variant 2's ``PICKS`` tiles) for an H100 / H200
(sm_90a) with the ptxas in triton's wheel and reports, per kernel and dtype:

- ``regs`` and ``spill`` (bytes of spill stores), from ``ptxas -v``: a tile that spills
  is slower than its register count suggests (variant 2's float32 forward that stores
  ``z`` spilled under triton 3.6, so it takes the unfused path);
- per innermost loop iteration (the tap or row-block loop, found from the PTX's loop
  headers): instructions, ``fma``, global loads (and how many are 128-bit ``v4``), and
  ``bar.sync`` barriers (a layout conversion through shared memory in the loop); and per
  loop of the machine code (SASS, ``nvdisasm``, which executes: ptxas drops the PTX's
  zeroing ``mov``s) that multiplies, its instructions, FFMA, MMA, loads and barriers.

The compile is specialised as a typical call is: pointers and sizes divisible by 16, unit
channel stride, ``M = stride = dilation = 1`` (pass ``--multiplier 2`` for a depth
multiplier); float32 with 64-bit offsets, IEEE products and one sequence per row block (a
``channels_first`` call's tiles), bfloat16 with 32-bit offsets, flattened rows and ``z``
stored from the forward (what variant 2 does for 16-bit training).  Static counts, not
times: an H200 run decides (``bench/gpu_probe.py``).  ``--check`` exits 1 when a tile that
variant 2 runs by default spills (the fused tiles wider than ``FUSED_MAX_F``, the alternative
kernels and variant 1, chosen only by environment variables, are reported, not checked).  Compiling every kernel
for sm_90 also catches what the interpreter accepts and the GPU compiler rejects
(``tests/test_kernel_triton.py`` runs this with ``--check``).

    python bench/ptx_report.py                       # table, ~1 minute on 2 cores
    python bench/ptx_report.py --json out.json --check
    python bench/ptx_report.py --matrix              # every specialization compiles
    PYTHONPATH=/path/to/triton-3.6:src python bench/ptx_report.py   # another triton
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

POINTERS = {"_fwd_kernel": "x_ptr w_ptr p_ptr bias_ptr y_ptr z_ptr",
            "_bwd_dz_dw_kernel": "x_ptr p_ptr dy_ptr dz_ptr dw_ptr",
            "_bwd_dx_kernel": "dz_ptr w_ptr dx_ptr",
            "_bwd_dp_kernel": "x_ptr w_ptr dy_ptr dp_ptr db_ptr",
            "_depthwise_kernel": "x_ptr w_ptr z_ptr",
            "_dw_partials_kernel": "x_ptr dz_ptr part_ptr",
            "_dw_rows_once_kernel": "x_ptr dz_ptr part_ptr",
            "_depthwise_unrolled_kernel": "x_ptr w_ptr z_ptr"}
TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
V1_SCRATCH = {"dz_ptr", "dw_ptr", "dp_ptr", "db_ptr", "part_ptr"}  # float32 buffers
V2_SCRATCH = {"part_ptr"}  # variant 2's dz is in the input dtype (cuBLAS' output)
# integer arguments a typical call has divisible by 16 (Triton specialises them so)
DIVISIBLE = {"C", "CM", "F", "R", "RX", "L", "L_out", "sxb", "sxl", "szb", "szl", "syb", "syl",
             "sdb", "sdl"}
ONES = {"sxc", "szj", "syf", "sdc", "sdf", "stride", "dilation"}


def launches():
    """``(label, kernel, config, scratch pointers, constexprs)`` of every kernel at the
    tiles and switches it runs with."""
    import torch
    from sepconv.kernels import triton_sepconv as T
    from sepconv.kernels import triton_v2 as V

    out = [(f"v1 {name} {i}", getattr(T, name), config, V1_SCRATCH, {})
           for name, configs in T.GPU_PICKS.items() for i, config in enumerate(configs)]
    interior = {"INTERIOR": V.INTERIOR}  # what variant 2's plans pass
    out += [("v2 depthwise", V._depthwise_kernel, V.PICKS["depthwise"], V2_SCRATCH, interior),
            ("v2 depthwise_unrolled (alternative)", V._depthwise_unrolled_kernel,
             V.PICKS["depthwise_unrolled"], V2_SCRATCH, {}),
            ("v2 dw per_tile (alternative)", V._dw_partials_kernel, V.PICKS["dw"], V2_SCRATCH,
             {}),
            ("v2 dw rows_once", V._dw_rows_once_kernel, V.PICKS["dw_rows_once"], V2_SCRATCH,
             interior),
            ("v2 dw rows_once_long", V._dw_rows_once_kernel, V.PICKS["dw_rows_once_long"],
             V2_SCRATCH, interior),
            ("v2 dx (v1's kernel)", T._bwd_dx_kernel, T.GPU_PICKS["_bwd_dx_kernel"][0],
             V2_SCRATCH, interior)]
    out += [(f"v2 fused F<={f}" + ("" if f <= V.FUSED_MAX_F else " (off by default)"),
             T._fwd_kernel, V._fused_config(f), V2_SCRATCH,
             {"INTERIOR": lambda dtype: V._fused_interior(getattr(torch, dtype))})
            for f in sorted(V.PICKS["fused"])]
    return out


def compile_one(fn, config, scratch, dtype: str, multiplier: int, arch: int = 90,
                extra: dict = None):
    """``triton.compile`` for ``sm_<arch>`` (no GPU needed): the ``CompiledKernel``."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    wide = dtype == "fp32"
    consts = dict(config.kwargs, HAS_BIAS=True, INT64=wide, SEQ_TILES=wide, EVEN_J=True, EVEN_K=True, EVEN_C=True,
                  STORE_Z=not wide, PRECISION="ieee" if wide else "tf32", UPCAST=False)
    consts = {k: v for k, v in consts.items() if k in fn.arg_names}
    import inspect

    for name, param in inspect.signature(fn.fn).parameters.items():  # constexpr defaults
        if name not in consts and param.default is not inspect.Parameter.empty:
            consts[name] = param.default
    for name, value in (extra or {}).items():  # a function of torch's dtype name, or a value
        consts[name] = value(TORCH_DTYPES[dtype]) if callable(value) else value
    ones = ONES | ({"M"} if multiplier == 1 else set())
    ptrs = POINTERS[fn.__name__].split()
    sig, constexprs, attrs = {}, {}, {}
    for i, a in enumerate(fn.arg_names):
        if a in consts:
            sig[a], constexprs[(i,)] = "constexpr", consts[a]
        elif a in ones:  # as Triton specialises an integer argument equal to 1
            sig[a], constexprs[(i,)] = "constexpr", 1
        elif a in ptrs:
            sig[a] = "*fp32" if a in scratch else "*" + dtype
            attrs[(i,)] = [["tt.divisibility", 16]]
        else:
            sig[a] = "i64" if wide else "i32"
            if a in DIVISIBLE:
                attrs[(i,)] = [["tt.divisibility", 16]]
    return triton.compile(ASTSource(fn, sig, constexprs, attrs),
                          target=GPUTarget("cuda", arch, 32),
                          options={"num_warps": config.num_warps,
                                   "num_stages": config.num_stages})


def ptxas_stats(ptx: str, arch: int = 90) -> dict:
    """Registers and spill-store bytes from ``ptxas -v`` (the ptxas in triton's wheel)."""
    import triton
    from triton.backends.nvidia.compiler import get_ptxas

    try:  # (its signature and return value vary between triton versions)
        tool = get_ptxas(arch)
    except TypeError:
        tool = get_ptxas()
    path = getattr(tool, "path", None) or (tool[0] if isinstance(tool, tuple) else None) or \
        os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as fh:
            fh.write(ptx)
        proc = subprocess.run([path, "-v", f"--gpu-name=sm_{arch}a", src, "-o",
                               os.path.join(tmp, "k.cubin")], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    regs = re.search(r"Used (\d+) registers", proc.stderr)
    spill = re.search(r"(\d+) bytes spill stores", proc.stderr)
    return {"regs": int(regs.group(1)) if regs else None,
            "spill": int(spill.group(1)) if spill else 0}


def loop_stats(ptx: str) -> dict:
    """The innermost loop's instructions per iteration: the basic blocks LLVM's comments
    in the PTX put in the deepest loop (``Loop Header: Depth=d`` on the header or
    ``in Loop: Header=BBx Depth=d`` on the others; a header named only by the others counts
    too).  Blocks taken conditionally inside the loop count as if always taken."""
    blocks, current, heading = {}, None, False
    for line in ptx.split("\n"):
        m = re.match(r"\s*\$L__(BB\d+_\d+):(.*)", line)
        if m:
            current, heading = m.group(1), True
            blocks[current] = {"comment": m.group(2), "lines": []}
        elif current is not None:
            if heading and line.strip().startswith("//"):  # the label's comment goes on
                blocks[current]["comment"] += " " + line.strip()
                continue
            heading = False
            blocks[current]["lines"].append(line)
    loops = {}  # header -> (depth, member blocks)
    for name, block in blocks.items():
        header = re.search(r"Loop Header: Depth=(\d+)", block["comment"])
        if header:  # (its comment may name its parent loop first)
            depth, members = loops.get(name, (int(header.group(1)), {name}))
            loops[name] = (int(header.group(1)), members)
            continue
        m = re.search(r"(?:in|Parent) Loop:? (?:Header=)?(BB\d+_\d+) Depth=(\d+)",
                      block["comment"])
        if m:
            depth, members = loops.get(m.group(1), (int(m.group(2)), {m.group(1)}))
            members.add(name)
            loops[m.group(1)] = (depth, members)
    loops = {h: v for h, v in loops.items() if h in blocks}
    if not loops:
        return {"loop": False}
    # a loop's blocks include its child loops' (each counted once: one inner iteration)
    for header, (depth, members) in loops.items():
        for other, (other_depth, other_members) in loops.items():
            if other_depth > depth and other_members & members:
                members |= other_members
    # the innermost loop holding multiply-adds (a kernel may have one per path, as the
    # depthwise kernel's interior and edge tiles: the first in the PTX, the likelier)
    order = list(blocks)
    ranked = sorted(loops.items(), key=lambda item: (-item[1][0], order.index(item[0])))
    mixes = [(depth, _mix(blocks, members)) for _, (depth, members) in ranked]
    inner = next((m for m in mixes if m[1]["fma"] or m[1]["mma"]), mixes[0])
    stats = {"loop": True, "depth": inner[0], "loops": len(loops)}
    stats.update(inner[1])
    outer = [m for m in mixes if m[0] == 1 and m is not inner]
    if inner[0] > 1 and outer:
        stats["outer"] = max(outer, key=lambda m: m[1]["instructions"])[1]
    stats["all"] = [dict(depth=d, **m) for d, m in mixes]
    return stats


def _mix(blocks: dict, members: set) -> dict:
    ops = collections.Counter()
    for name in members:
        for raw in blocks[name]["lines"]:
            text = raw.strip()
            if not text or text.startswith(("//", ".loc", "{", "}", "$L")):
                continue
            tokens = text.split()
            op = tokens[1] if tokens[0].startswith("@") else tokens[0]
            ops[op] += 1
    head = lambda prefix: sum(n for op, n in ops.items() if op.startswith(prefix))
    return {"instructions": sum(ops.values()), "fma": head("fma"),
            "mma": head("mma") + head("wgmma"), "loads": head("ld.global"),
            "v4_loads": sum(n for op, n in ops.items() if op.startswith("ld.global")
                            and ".v4" in op),
            "barriers": head("bar.sync") + head("barrier")}


def sass_loops(cubin: bytes) -> list:
    """The machine code's loops (``nvdisasm`` in triton's wheel): for each backward branch,
    the instructions from its target label to it, innermost first; ``[]`` without nvdisasm.
    Each: ``{"instructions", "ffma", "mma", "loads", "conversions", "barriers"}``."""
    import triton

    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin",
                        "nvdisasm")
    if not os.path.exists(tool):
        return []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.cubin")
        with open(path, "wb") as fh:
            fh.write(cubin)
        text = subprocess.run([tool, "-c", path], capture_output=True, text=True).stdout
    code, labels = [], {}
    for line in text.split("\n"):
        label = re.match(r"\s*(\.L_x_\d+):", line)
        if label:
            labels[label.group(1)] = len(code)
            continue
        m = re.match(r"\s*/\*[0-9a-f]+\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)(\S*)(.*)", line)
        if m:
            code.append((m.group(1), m.group(3)))
    blocks = []  # (label, first, last) basic blocks by labels, for sass_blocks
    starts = sorted(set(labels.values()) | {0})
    for a, b in zip(starts, starts[1:] + [len(code)]):
        name = next((k for k, v in labels.items() if v == a), "entry")
        blocks.append((name, a, b))
    loops = []
    for end, (op, rest) in enumerate(code):
        target = re.search(r"\((\.L_x_\d+)\)", rest) if op == "BRA" else None
        if target and labels.get(target.group(1), end + 1) <= end:
            body = [o for o, _ in code[labels[target.group(1)]:end + 1]]
            count = collections.Counter(body)
            first = labels[target.group(1)]
            loops.append({"instructions": len(body), "ffma": count["FFMA"],
                          "mma": count["HMMA"] + count["HGMMA"],
                          "loads": count["LDG"] + count["LDS"],
                          "conversions": count["PRMT"] + count["F2F"] + count["I2F"],
                          "barriers": count["BAR"],
                          # its basic blocks, when it branches inside (interior / edge
                          # tiles): label, instructions, FFMA, loads, barriers, branches
                          "blocks": [(name, b - a,
                                      sum(o == "FFMA" for o, _ in code[a:b]),
                                      sum(o in ("LDG", "LDS") for o, _ in code[a:b]),
                                      sum(o == "BAR" for o, _ in code[a:b]),
                                      [re.search(r"\((\.L_x_\d+)\)", r).group(1)
                                       for o, r in code[a:b] if o == "BRA"
                                       and re.search(r"\((\.L_x_\d+)\)", r)])
                                     for name, a, b in blocks if first <= a <= end]})
    return sorted(loops, key=lambda loop: loop["instructions"])


def report(dtypes=("fp32", "bf16"), multiplier: int = 1, only: str = "",
           blocks: bool = False) -> list:
    rows = []
    for label, fn, config, scratch, extra in launches():
        if only and not any(w in label for w in only.split(",")):
            continue
        for dtype in dtypes:
            compiled = compile_one(fn, config, scratch, dtype, multiplier, extra=extra)
            ptx = compiled.asm["ptx"]
            row = {"kernel": label, "dtype": dtype, "multiplier": multiplier,
                   "tile": dict(config.kwargs, num_warps=config.num_warps,
                                num_stages=config.num_stages)}
            row.update(ptxas_stats(ptx))
            row.update(loop_stats(ptx))
            row["sass_loops"] = sass_loops(compiled.asm["cubin"])
            rows.append(row)
            text = f"{label:34s} {dtype:5s} regs {row['regs']!s:>4} spill {row['spill']:>4}"
            if row["loop"]:
                text += "  PTX inner loop: " + _describe(row)
                if "outer" in row:
                    text += " | outer: " + _describe(row["outer"])
            for loop in row["sass_loops"]:
                if loop["ffma"] or loop["mma"]:
                    text += (f"\n{'':47s}SASS loop: {loop['instructions']} instr, "
                             f"{loop['ffma']} FFMA, {loop['mma']} MMA, {loop['loads']} LDG/LDS, "
                             f"{loop['barriers']} BAR")
                    if blocks and len(loop["blocks"]) > 1:
                        for name, n, ffma, loads, bars, to in loop["blocks"]:
                            text += (f"\n{'':51s}{name:8s} {n:4d} instr {ffma:3d} FFMA "
                                     f"{loads:2d} LDG {bars} BAR -> {' '.join(to) or 'next'}")
            print(text, flush=True)
    return rows


def matrix() -> int:
    """Compile variant 2's kernels (depthwise, both d(depthwise) tiles, dx, the fused
    forward at BLOCK_F 32 and 128) for sm_90a across the specializations calls can take:
    int32 / int64 offsets, one sequence per row block or flattened rows, channel / tap
    counts a multiple of the block or not, interior tiles on / off, depth multiplier 1 or
    at run time, float32 / bfloat16 / float16.  Prints each failure; returns their count."""
    import itertools

    from sepconv.kernels import triton_sepconv as T
    from sepconv.kernels import triton_v2 as V

    kernels = [("depthwise", V._depthwise_kernel, V.PICKS["depthwise"]),
               ("dw rows_once", V._dw_rows_once_kernel, V.PICKS["dw_rows_once"]),
               ("dw rows_once_long", V._dw_rows_once_kernel, V.PICKS["dw_rows_once_long"]),
               ("dx", T._bwd_dx_kernel, T.GPU_PICKS["_bwd_dx_kernel"][0]),
               ("fused F<=128", T._fwd_kernel, V._fused_config(128)),
               ("fused F<=32", T._fwd_kernel, V._fused_config(32))]
    done = failed = 0
    for (label, fn, config), dtype, int64, seq, even, interior, multiplier in itertools.product(
            kernels, ("fp32", "bf16", "fp16"), (False, True), (False, True), (False, True),
            (False, True), (1, 2)):
        if dtype == "fp16" and (int64 or not even):
            continue  # (a third of the grid is enough for the third dtype)
        switches = dict(INT64=int64, SEQ_TILES=seq, EVEN_J=even, EVEN_K=even, EVEN_C=even,
                        INTERIOR=interior, STORE_Z=dtype != "fp32" and not int64)
        try:
            compile_one(fn, config, V2_SCRATCH, dtype, multiplier, extra=switches)
            done += 1
        except Exception as exc:  # (every failure listed, then the count)
            failed += 1
            print(f"FAILED {label} {dtype} M={multiplier} {switches}: "
                  f"{str(exc).splitlines()[-1][:200]}", flush=True)
    print(f"matrix: {done} compiled, {failed} failed")
    return failed


def _describe(mix: dict) -> str:
    return (f"{mix['instructions']} instr, {mix['fma']} fma, {mix['mma']} mma, "
            f"{mix['loads']} loads ({mix['v4_loads']} v4), {mix['barriers']} bar")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--multiplier", type=int, default=1,
                    help="depth multiplier: 1 specialises M away, as Triton does")
    ap.add_argument("--only", default="", help="comma list of substrings of kernel labels")
    ap.add_argument("--blocks", action="store_true",
                    help="print the basic blocks of SASS loops that branch inside (the "
                         "interior and edge tiles' paths)")
    ap.add_argument("--matrix", action="store_true",
                    help="instead: compile variant 2's kernels across every specialization "
                         "(432 compiles, ~6 minutes on 2 cores); exit 1 on a failure")
    ap.add_argument("--json", default=None)
    ap.add_argument("--check", action="store_true", help="exit 1 if any tile spills")
    args = ap.parse_args(argv)
    os.environ.pop("TRITON_INTERPRET", None)
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    import triton

    if args.matrix:
        print(f"triton {triton.__version__}, sm_90a")
        return 1 if matrix() else 0
    print(f"triton {triton.__version__}, sm_90a, multiplier {args.multiplier}")
    rows = report(tuple(args.dtypes.split(",")), args.multiplier, args.only, args.blocks)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"triton": triton.__version__, "arch": "sm_90a", "rows": rows}, fh,
                      indent=1)
    spilling = [f"{r['kernel']} {r['dtype']}" for r in rows if r["spill"]]
    checked = [name for name in spilling if name.startswith("v2 ")
               and "off by default" not in name and "alternative" not in name]
    if spilling:
        print("spills:", ", ".join(spilling))
    print(f"compiled {len(rows)} kernels")
    return 1 if args.check and checked else 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))
    sys.exit(main())
