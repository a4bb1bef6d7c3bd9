#!/usr/bin/env python3
"""PyTorch on the same GPU, and the ceilings, for the ContraNorm throughput benchmark.

Times the ContraNorm layer written as PyTorch ops, in eager mode and under torch.compile, in
fp32 and tf32, for the forward, the backward and both, and measures in the same run the two
ceilings every row is compared with: a large cuBLAS GEMM and a large device-to-device copy.
The JavaScript side of the benchmark reads the JSON this writes and joins its rows by `key`.

  python3 bench/gpu/torch_bench.py --out bench/out             # full run, planned for ~4 min
  python3 bench/gpu/torch_bench.py --out bench/out --quick     # about 5x less work: a smoke run
  python3 bench/gpu/torch_bench.py --out bench/out --dry-run   # the plan only; needs no torch
  CONTRANORM_BENCH_OUT=bench/out python3 bench/gpu/torch_bench.py
  python3 bench/gpu/torch_bench.py --out DIR --device cpu --shapes 2x16x8   # the logic, no GPU

--shapes, --precisions, --impls and --passes pick a subset; --budget-s (default 330, quick 200)
stops starting new groups of rows after that many seconds, marking the rest skipped.

Writes OUT/torch.json (rewritten after each group of rows, so a run cut short keeps what it
measured) and prints one line per row as it goes and a short table last. Exit status: 0 done;
1 a correctness check failed or an eager row could not run; 2 bad arguments; 3 no torch or no
CUDA device.

Method. Times are CUDA events around each call, the median over many calls after warm-up.
Each call reads its own input buffer: k buffers of x (and of dy) are rotated, with k chosen so
they total more than twice the L2 size, and a call revisits a buffer only after k - 1 others,
so no timed call finds its input in L2 because the previous call left it there. The forward is
timed with autograd recording (x, weight and bias require grad), because that is the forward a
training step runs and the one that keeps what the backward needs. Gradients are returned by
torch.autograd.grad, not accumulated into .grad. Peak memory is torch.cuda.max_memory_allocated
over one extra call of the pass, counting that call's own inputs but not the other buffers.

torch is imported only after the arguments are parsed and only for a real run: the dry run
works on any python3 (3.8 or later) and parses the whole file, PyTorch half included.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass

# the layer as the benchmark configures it, on both sides
SCALE = 0.1
TEMPERATURE = 1.0
LN_EPS = 1e-6
NORM_EPS = 1e-12

OUT_ENV = 'CONTRANORM_BENCH_OUT'
JSON_NAME = 'torch.json'
ASSUMED_L2_BYTES = 50 * 2**20  # the H200's L2, used by the dry run and where torch cannot tell
PRECISIONS = ('fp32', 'tf32')
PASSES = ('forward', 'backward', 'forward+backward')
IMPLS = ('eager', 'compile')


@dataclass(frozen=True)
class Shape:
    """One benchmark shape: B items of N rows (tokens or nodes) of D channels."""

    mode: str  # 'tokens' or 'features'
    B: int
    N: int
    D: int

    @property
    def label(self) -> str:
        return f'{self.mode}/{self.B}x{self.N}x{self.D}'

    @property
    def x_shape(self) -> tuple:
        # the feature variant takes the node matrix [N, D] as it is when there is one item
        if self.mode == 'features' and self.B == 1:
            return (self.N, self.D)
        return (self.B, self.N, self.D)

    @property
    def numel(self) -> int:
        return self.B * self.N * self.D


DEFAULT_SHAPES = (
    Shape('tokens', 32, 128, 768),
    Shape('tokens', 32, 512, 768),
    Shape('tokens', 8, 2048, 768),
    Shape('tokens', 4, 4096, 256),
    Shape('tokens', 1, 16, 64),
    Shape('features', 1, 169343, 128),  # ogbn-arxiv: 169,343 nodes of 128 features
)


@dataclass(frozen=True)
class Settings:
    """How much work each row gets; --quick cuts it about five times."""

    row_target_s: float  # timed work per row: reps = row_target_s / (time of one call)
    min_reps: int
    max_reps: int
    warmup: int  # calls after the first (which may compile) and before the timed ones
    gemm_n: int
    gemm_reps: int
    copy_bytes: int
    copy_reps: int
    budget_s: float  # no new group of rows starts after this many seconds


FULL = Settings(0.4, 20, 200, 5, 8192, 20, 2 * 2**30, 30, 330.0)
QUICK = Settings(0.08, 5, 40, 2, 8192, 5, 2 * 2**30, 8, 200.0)
CPU = Settings(0.05, 3, 10, 1, 512, 3, 64 * 2**20, 3, 600.0)  # logic check only


def work(mode: str, B: int, N: int, D: int, pass_name: str) -> tuple:
    """FLOPs and bytes of one call of a pass, as (flops, bytes).

    These are the definitions every table of the benchmark uses, on either side.

    FLOPs count the matrix products only, two per multiply-add; normalization, softmax and
    LayerNorm are not counted:
      tokens    forward  4*B*N^2*D   S = xn xn^T, then P x
                backward 6*B*N^2*D   dP = dxneg x^T, P^T dxneg, then G xn (G = dS + dS^T)
      features  forward  4*B*N*D^2   S = xn^T xn, then x P
                backward 6*B*N*D^2   the same three products with the roles of N and D swapped

    Bytes are the least traffic a pass must move in fp32 (4 bytes a value). With M = N in
    tokens mode and M = D in features mode, and the probabilities P ([B, M, M]) written once by
    the forward and read by the backward:
      forward   read x, write y, write P and read it once             4*(2*B*N*D + 2*B*M^2)
      backward  read x, dy and P, write dx, write dS and read it once  4*(3*B*N*D + 3*B*M^2)
      forward+backward is the sum of the two.
    Per-row statistics (norms, mean, rstd), weight and bias are O(B*N + D) and not counted. In
    features mode at ogbn-arxiv size x is larger than L2 and must be streamed twice (S needs every
    row before x P can start), so there the count is low and the GB/s it gives is conservative.
    """
    M = N if mode == 'tokens' else D
    product = B * N * N * D if mode == 'tokens' else B * N * D * D
    fwd = (4 * product, 4 * (2 * B * N * D + 2 * B * M * M))
    bwd = (6 * product, 4 * (3 * B * N * D + 3 * B * M * M))
    if pass_name == 'forward':
        return fwd
    if pass_name == 'backward':
        return bwd
    return (fwd[0] + bwd[0], fwd[1] + bwd[1])


def row_key(shape: Shape, precision: str, pass_name: str, impl: str) -> str:
    """The join key of a row, e.g. 'tokens/32x512x768/fp32/forward+backward/eager'."""
    return f'{shape.label}/{precision}/{pass_name}/{impl}'


def buffer_count(x_bytes: int, l2_bytes: int) -> int:
    """How many input buffers to rotate so that together they exceed twice the L2 size."""
    return max(2, (2 * l2_bytes) // max(1, x_bytes) + 1)


# -- the formula ---------------------------------------------------------------------------------
#
# The ContraNorm module published by the paper's authors (ICLR 2023), in the configuration the
# benchmark compares: not learnable, identity, dual_norm and pre_norm off, temperature 1,
# scale 0.1, followed by LayerNorm(D, eps=1e-6) with its affine weight and bias. Written out as
# plain PyTorch ops:
#
#   tokens:   xn = x / max(|x_row|, 1e-12)              over D, for x of [B, N, D]
#             P = softmax(xn xn^T / temperature)        [B, N, N], softmax over the last axis
#             y = LayerNorm(x - scale * P x)
#   features: the same for x of [N, D] (or [B, N, D]), contrasting channels instead of tokens:
#             P = softmax(xn^T xn / temperature)        [D, D], softmax over the last axis
#             y = LayerNorm(x - scale * x P)            the variant used on ogbn-arxiv


def contranorm_tokens(x, weight, bias):
    """The tokens formula on x of [B, N, D]."""
    import torch
    import torch.nn.functional as F

    xn = F.normalize(x, dim=-1, eps=NORM_EPS)
    sim = torch.bmm(xn, xn.transpose(1, 2)) / TEMPERATURE
    probs = torch.softmax(sim, dim=-1)
    x_neg = torch.bmm(probs, x)
    z = x - SCALE * x_neg
    return F.layer_norm(z, (x.shape[-1],), weight, bias, LN_EPS)


def contranorm_features(x, weight, bias):
    """The feature formula on x of [N, D] (or [B, N, D])."""
    import torch
    import torch.nn.functional as F

    xn = F.normalize(x, dim=-1, eps=NORM_EPS)
    sim = torch.matmul(xn.transpose(-2, -1), xn) / TEMPERATURE
    probs = torch.softmax(sim, dim=-1)
    x_neg = torch.matmul(x, probs)
    z = x - SCALE * x_neg
    return F.layer_norm(z, (x.shape[-1],), weight, bias, LN_EPS)


def formula(mode: str):
    return contranorm_tokens if mode == 'tokens' else contranorm_features


def reference_forward(x: list, weight: list, bias: list, mode: str) -> list:
    """The same forward in plain Python floats, one loop per sum, on x as nested lists [B][N][D].

    Independent of torch: the real run compares the torch formula against it on tiny shapes.
    """

    def softmax(v: list) -> list:
        top = max(v)
        e = [math.exp(a - top) for a in v]
        total = sum(e)
        return [a / total for a in e]

    out = []
    for item in x:
        N, D = len(item), len(item[0])

        # normalize
        norms = [max(math.sqrt(sum(v * v for v in row)), NORM_EPS) for row in item]
        xn = [[v / n for v in row] for row, n in zip(item, norms)]

        # contrast
        if mode == 'tokens':
            x_neg = []
            for i in range(N):
                s = [sum(a * b for a, b in zip(xn[i], xn[j])) / TEMPERATURE for j in range(N)]
                p = softmax(s)
                x_neg.append([sum(p[j] * item[j][d] for j in range(N)) for d in range(D)])
        else:
            s = [
                [sum(xn[i][c] * xn[i][e] for i in range(N)) / TEMPERATURE for e in range(D)]
                for c in range(D)
            ]
            p = [softmax(row) for row in s]
            x_neg = [
                [sum(item[i][c] * p[c][e] for c in range(D)) for e in range(D)] for i in range(N)
            ]

        # layernorm
        rows = []
        for i in range(N):
            z = [item[i][d] - SCALE * x_neg[i][d] for d in range(D)]
            mean = sum(z) / D
            var = sum((v - mean) ** 2 for v in z) / D
            rstd = 1.0 / math.sqrt(var + LN_EPS)
            rows.append([(v - mean) * rstd * weight[d] + bias[d] for d, v in enumerate(z)])
        out.append(rows)
    return out


def tiny_inputs(B: int, N: int, D: int, seed: int) -> tuple:
    """Deterministic x [B][N][D], weight [D] and bias [D] as plain lists."""
    state = seed

    def uniform() -> float:
        nonlocal state
        state = (state * 1664525 + 1013904223) % 2**32
        return state / 2**31 - 1.0

    x = [[[uniform() for _ in range(D)] for _ in range(N)] for _ in range(B)]
    weight = [1.0 + 0.1 * uniform() for _ in range(D)]
    bias = [0.1 * uniform() for _ in range(D)]
    return x, weight, bias


REFERENCE_SHAPES = (
    Shape('tokens', 2, 5, 4),
    Shape('features', 1, 6, 3),
    Shape('features', 2, 7, 5),
)
CHECK_SHAPES = (
    Shape('tokens', 2, 33, 24),
    Shape('features', 1, 257, 20),
    Shape('features', 2, 65, 12),
)
# max |a - b| / max(1, max |b|) of y, dx, dweight and dbias against float64
CHECK_TOL = {'fp32': 1e-4, 'tf32': 2e-2}


# -- arguments and plan --------------------------------------------------------------------------


def parse_shape(text: str) -> Shape:
    """'BxNxD' (tokens) or 'features:BxNxD' / 'tokens:BxNxD'."""
    mode, _, dims = text.rpartition(':')
    mode = {'': 'tokens', 't': 'tokens', 'f': 'features'}.get(mode, mode)
    if mode not in ('tokens', 'features'):
        raise argparse.ArgumentTypeError(
            f"shape {text!r}: expected mode 'tokens' or 'features', received {mode!r}"
        )
    parts = dims.lower().split('x')
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(
            f'shape {text!r}: expected BxNxD with three positive integers, e.g. 32x512x768'
        )
    B, N, D = (int(p) for p in parts)
    return Shape(mode, B, N, D)


def parse_list(allowed: tuple, name: str):
    def parse(text: str) -> tuple:
        items = tuple(t for t in text.split(',') if t)
        bad = [t for t in items if t not in allowed]
        if not items or bad:
            raise argparse.ArgumentTypeError(
                f'{name}: expected a comma-separated subset of {",".join(allowed)}, '
                f'received {text!r}'
            )
        return tuple(t for t in allowed if t in items)

    return parse


def parse_args(argv: list) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog='torch_bench.py',
        description='PyTorch side and ceilings of the ContraNorm GPU benchmark.',
    )
    p.add_argument('--out', help=f'folder for {JSON_NAME} (default: ${OUT_ENV})')
    p.add_argument('--quick', action='store_true', help='about 5x fewer calls: a smoke run')
    p.add_argument('--dry-run', action='store_true', help='print the plan; import no torch')
    p.add_argument(
        '--shapes',
        nargs='+',
        metavar='SHAPE',
        help="BxNxD (tokens) or features:BxNxD, space- or comma-separated (default: the six)",
    )
    p.add_argument('--precisions', type=parse_list(PRECISIONS, '--precisions'), default=PRECISIONS)
    p.add_argument('--impls', type=parse_list(IMPLS, '--impls'), default=IMPLS)
    p.add_argument('--passes', type=parse_list(PASSES, '--passes'), default=PASSES)
    p.add_argument('--budget-s', type=float, help='start no new group of rows after this')
    p.add_argument(
        '--device',
        choices=('cuda', 'cpu'),
        default='cuda',
        help='cpu checks the script where torch has no GPU; its numbers mean nothing',
    )
    p.add_argument('--seed', type=int, default=1234)
    args = p.parse_args(argv)

    # shapes
    if args.shapes:
        try:
            args.shapes = tuple(
                parse_shape(t) for item in args.shapes for t in item.split(',') if t
            )
        except argparse.ArgumentTypeError as e:
            p.error(str(e))
        if not args.shapes:
            p.error('--shapes: expected at least one shape')
    else:
        args.shapes = DEFAULT_SHAPES

    # output folder
    args.out = args.out or os.environ.get(OUT_ENV)
    if not args.out:
        p.error(f'expected an output folder: --out DIR or ${OUT_ENV}')
    problem = out_folder_problem(args.out)
    if problem:
        p.error(f'--out {args.out}: {problem}')

    # work
    args.settings = CPU if args.device == 'cpu' else QUICK if args.quick else FULL
    if args.budget_s is None:
        args.budget_s = args.settings.budget_s
    if not args.budget_s > 0:
        p.error(f'--budget-s: expected a positive number of seconds, received {args.budget_s}')
    return args


def out_folder_problem(out: str):
    """None when `out` is a writable folder or can be made inside one; else what is wrong."""
    if os.path.exists(out):
        if not os.path.isdir(out):
            return 'exists and is not a folder'
        if not os.access(out, os.W_OK | os.X_OK):
            return 'folder is not writable'
        return None
    parent = os.path.dirname(os.path.abspath(out))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        return f'cannot be created: {parent} is not a writable folder'
    return None


def plan_rows(args: argparse.Namespace) -> list:
    """Every row the run will time, in order: impl, shape, precision, pass.

    Every eager row runs before the first compilation, so a slow compiler that exhausts
    --budget-s costs compile rows only.
    """
    return [
        (shape, precision, pass_name, impl)
        for impl in args.impls
        for shape in args.shapes
        for precision in args.precisions
        for pass_name in args.passes
    ]


def print_plan(args: argparse.Namespace, l2_bytes: int, l2_known: bool) -> None:
    s = args.settings
    rows = plan_rows(args)
    groups = len(args.shapes) * len(args.precisions)
    compiles = groups if 'compile' in args.impls else 0
    out_state = 'exists' if os.path.isdir(args.out) else 'will be created'
    l2_note = 'queried' if l2_known else 'assumed until a device is queried'
    print(
        f'plan of {os.path.basename(__file__)}'
        + (' (dry run: torch not imported)' if args.dry_run else '')
    )
    print(f'  out: {os.path.join(args.out, JSON_NAME)} (folder {out_state}, writable)')
    print(f'  device: {args.device}; L2 {l2_bytes / 2**20:.0f} MiB ({l2_note})')
    print(
        f'  ceilings: GEMM {s.gemm_n}^3 through torch.mm in fp32 and tf32,'
        f' {s.gemm_reps} calls each; copy of {s.copy_bytes / 2**30:g} GiB, {s.copy_reps} calls'
        f' (read + write bytes)'
    )
    print(
        f'  checks: formula against plain-Python float64 on {len(REFERENCE_SHAPES)} tiny shapes;'
        f' fp32 and tf32 against float64 on {len(CHECK_SHAPES)} small shapes'
    )
    print(
        f'  rows: {len(rows)} = {len(args.shapes)} shapes x {len(args.precisions)} precisions'
        f' ({",".join(args.precisions)}) x {len(args.passes)} passes x {len(args.impls)} impls'
        f' ({",".join(args.impls)})'
    )
    for shape in args.shapes:
        x_bytes = 4 * shape.numel
        k = buffer_count(x_bytes, l2_bytes)
        flops, _ = work(shape.mode, shape.B, shape.N, shape.D, 'forward+backward')
        print(
            f'    {shape.label:<26} x {x_bytes / 2**20:9.3f} MiB  {k:6d} buffers'
            f'  forward+backward {flops / 1e9:10.3f} GFLOP'
        )
    print(
        f'  reps: median of {s.min_reps}..{s.max_reps} timed calls per row'
        f' (about {s.row_target_s:g} s of timed work) after 1 + {s.warmup} warm-up calls'
    )
    print(f'  compile: once per (shape, precision): {compiles} compilations, mode default')
    # a guess for an H200, not a measurement: ~12 s a compilation, ~1 s a row, ~10 s of ceilings
    guess = 10 + 12 * compiles + len(rows) * (1.0 if not args.quick else 0.3)
    print(
        f'  expected: about {guess / 60:.1f} min on an H200; no new group starts after'
        f' {args.budget_s:g} s (--budget-s)'
    )
    print(f'  join key of a row: {row_key(rows[0][0], *rows[0][1:])}' if rows else '  no rows')


# -- timing --------------------------------------------------------------------------------------


class Timer:
    """Times calls one by one: CUDA events on a GPU, the host clock on the CPU."""

    def __init__(self, torch, device: str):
        self.torch = torch
        self.cuda = device == 'cuda'

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def run(self, setup, call, first: int, count: int) -> list:
        """Milliseconds of call(setup(i)) for i in first .. first + count - 1.

        setup runs outside the timed region; its work is queued before the start event, so it
        is not in the interval even when the GPU is still busy with it.
        """
        if self.cuda:
            pairs = []
            for i in range(first, first + count):
                args = setup(i)
                start = self.torch.cuda.Event(enable_timing=True)
                end = self.torch.cuda.Event(enable_timing=True)
                start.record()
                out = call(args)
                end.record()
                pairs.append((start, end))
                del out, args
            self.torch.cuda.synchronize()
            return [s.elapsed_time(e) for s, e in pairs]
        times = []
        for i in range(first, first + count):
            args = setup(i)
            t0 = time.perf_counter()
            out = call(args)
            times.append((time.perf_counter() - t0) * 1e3)
            del out, args
        return times


def percentile(values: list, q: float) -> float:
    v = sorted(values)
    pos = (len(v) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def finite(value):
    """value with every NaN or infinity replaced by None, so that JSON.parse reads the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def short_error(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f'{type(e).__name__}: {text[0] if text else ""}'[:500]


# -- the run -------------------------------------------------------------------------------------


class Bench:
    """One real run: device facts, ceilings, checks and rows, saved to OUT/torch.json."""

    def __init__(self, args: argparse.Namespace, torch):
        self.args = args
        self.s = args.settings
        self.torch = torch
        self.dev = torch.device(args.device)
        self.timer = Timer(torch, args.device)
        self.t0 = time.perf_counter()
        self.path = os.path.join(args.out, JSON_NAME)
        self.result = {
            'schema': 1,
            'script': 'bench/gpu/torch_bench.py',
            'created': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
            'argv': sys.argv[1:],
            'quick': bool(args.quick),
            'device': self.device_facts(),
            'constants': {
                'scale': SCALE,
                'temperature': TEMPERATURE,
                'ln_eps': LN_EPS,
                'norm_eps': NORM_EPS,
                'layernorm_affine': True,
            },
            'method': {
                'timing': 'CUDA events around each call; median, p10, p90 over the timed calls',
                'rotation': 'k input buffers of x and dy, together over 2x L2, one per call',
                'forward': 'autograd recording on (x, weight, bias require grad)',
                'backward': 'forward run untimed, L2 flushed, then torch.autograd.grad timed',
                'forward+backward': 'forward and torch.autograd.grad in one timed region',
                'grads': 'dx, dweight, dbias returned by torch.autograd.grad (no accumulation)',
                'peak_mem': 'max_memory_allocated over one call plus its own inputs',
                'compile': 'torch.compile(mode default, dynamic=False) per (shape, precision)',
            },
            'definitions': {
                'flops': {
                    'tokens': {'forward': '4*B*N^2*D', 'backward': '6*B*N^2*D'},
                    'features': {'forward': '4*B*N*D^2', 'backward': '6*B*N*D^2'},
                },
                'bytes': {
                    'M': 'N in tokens mode, D in features mode',
                    'forward': '4*(2*B*N*D + 2*B*M^2)',
                    'backward': '4*(3*B*N*D + 3*B*M^2)',
                    'forward+backward': 'forward + backward',
                },
            },
            'ceilings': {},
            'checks': {},
            'rows': [],
            'elapsed_s': None,
            'complete': False,
        }
        self.failed = False

    # facts

    def device_facts(self) -> dict:
        torch = self.torch
        facts = {
            'torch': torch.__version__,
            'cuda_runtime': getattr(torch.version, 'cuda', None),
            'python': platform.python_version(),
            'host': platform.machine(),
            'kind': self.args.device,
        }
        if self.args.device != 'cuda':
            facts.update(name=platform.processor() or 'cpu', l2_bytes=None)
            return facts
        props = torch.cuda.get_device_properties(0)
        l2 = getattr(props, 'L2_cache_size', None) or getattr(props, 'l2_cache_size', None)
        facts.update(
            name=props.name,
            capability=f'{props.major}.{props.minor}',
            sm_count=props.multi_processor_count,
            total_mem_bytes=props.total_memory,
            l2_bytes=int(l2) if l2 else None,
            driver=driver_version(),
        )
        return facts

    @property
    def l2_bytes(self) -> int:
        l2 = self.result['device'].get('l2_bytes')
        if l2:
            return l2
        return ASSUMED_L2_BYTES if self.args.device == 'cuda' else 4 * 2**20

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def save(self) -> None:
        self.result['elapsed_s'] = round(self.elapsed(), 2)
        tmp = self.path + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(finite(self.result), f, indent=1, allow_nan=False)
            f.write('\n')
        os.replace(tmp, self.path)

    # precision

    def set_precision(self, name: str) -> dict:
        """fp32: no TF32 anywhere ('highest'); tf32: TF32 for matmul and cuDNN ('high').

        The legacy switches are used, alone: recent torch refuses to read a TF32 state set
        partly through them and partly through the per-backend fp32_precision settings, and
        torch.compile reads the legacy ones. Only where the legacy ones are gone are the new
        ones set instead.
        """
        torch = self.torch
        tf32 = name == 'tf32'
        used = 'legacy'
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # the legacy switches warn that a new API exists
            try:
                torch.backends.cuda.matmul.allow_tf32 = tf32
                torch.backends.cudnn.allow_tf32 = tf32
                torch.set_float32_matmul_precision('high' if tf32 else 'highest')
            except (AttributeError, RuntimeError):
                used = 'fp32_precision'
                mode = 'tf32' if tf32 else 'ieee'
                torch.backends.cuda.matmul.fp32_precision = mode
                torch.backends.cudnn.conv.fp32_precision = mode
                torch.backends.cudnn.rnn.fp32_precision = mode
            state = {'api': used}
            for label, read in (
                ('matmul.allow_tf32', lambda: torch.backends.cuda.matmul.allow_tf32),
                ('cudnn.allow_tf32', lambda: torch.backends.cudnn.allow_tf32),
                ('float32_matmul_precision', torch.get_float32_matmul_precision),
            ):
                try:
                    state[label] = read()
                except Exception as e:  # a mixed-state refusal is worth recording, not fatal
                    state[label] = short_error(e)
        return state

    # ceilings

    def ceilings(self) -> None:
        torch, s = self.torch, self.s
        gemm = {}
        n = s.gemm_n
        a = torch.randn(n, n, device=self.dev)
        b = torch.randn(n, n, device=self.dev)
        c = torch.empty(n, n, device=self.dev)

        def nothing(i):
            return None

        def mm(_):
            return torch.mm(a, b, out=c)

        def copy(_):
            return dst.copy_(src)

        for precision in PRECISIONS:
            state = self.set_precision(precision)
            self.timer.run(nothing, mm, 0, 3)
            t = self.timer.run(nothing, mm, 0, s.gemm_reps)
            ms = statistics.median(t)
            gemm[precision] = {
                'n': n,
                'median_ms': ms,
                'p10_ms': percentile(t, 0.1),
                'p90_ms': percentile(t, 0.9),
                'reps': len(t),
                'tflops': 2 * n**3 / (ms * 1e-3) / 1e12,
                'precision_state': state,
            }
        del a, b, c
        numel = s.copy_bytes // 4
        src = torch.ones(numel, device=self.dev)
        dst = torch.empty(numel, device=self.dev)
        self.timer.run(nothing, copy, 0, 3)
        t = self.timer.run(nothing, copy, 0, s.copy_reps)
        ms = statistics.median(t)
        copied = {
            'bytes_moved': 2 * numel * 4,
            'median_ms': ms,
            'p10_ms': percentile(t, 0.1),
            'p90_ms': percentile(t, 0.9),
            'reps': len(t),
            'gbps': 2 * numel * 4 / (ms * 1e-3) / 1e9,
        }
        del src, dst
        self.empty_cache()
        self.result['ceilings'] = {'gemm': gemm, 'copy': copied}
        print(
            f'ceilings: GEMM {n}^3 fp32 {gemm["fp32"]["tflops"]:.1f} TFLOP/s,'
            f' tf32 {gemm["tf32"]["tflops"]:.1f} TFLOP/s; copy {copied["gbps"]:.0f} GB/s'
        )

    def empty_cache(self) -> None:
        gc.collect()
        if self.args.device == 'cuda':
            self.torch.cuda.empty_cache()

    # checks

    def check_reference(self) -> None:
        """The torch formula in float64 against the plain-Python forward, on tiny shapes."""
        torch = self.torch
        out = []
        for k, shape in enumerate(REFERENCE_SHAPES):
            x, w, b = tiny_inputs(shape.B, shape.N, shape.D, seed=11 + k)
            want = reference_forward(x, w, b, shape.mode)
            xt = torch.tensor(x, dtype=torch.float64, device=self.dev).reshape(shape.x_shape)
            wt = torch.tensor(w, dtype=torch.float64, device=self.dev)
            bt = torch.tensor(b, dtype=torch.float64, device=self.dev)
            with torch.no_grad():
                got = formula(shape.mode)(xt, wt, bt).reshape(shape.B, shape.N, shape.D)
            diff = (got - torch.tensor(want, dtype=torch.float64, device=self.dev)).abs().max()
            err = float(diff)
            out.append({'shape': shape.label, 'max_abs_err': err, 'ok': err < 1e-9})
        ok = all(r['ok'] for r in out)
        self.result['checks']['reference'] = {'tol': 1e-9, 'ok': ok, 'cases': out}
        self.failed |= not ok
        print(f'check: formula against plain-Python float64: {"ok" if ok else "FAILED"}')

    def check_precision(self, precision: str) -> None:
        """fp32 (or tf32) forward and gradients against float64 of the same formula."""
        torch = self.torch
        tol = CHECK_TOL[precision]
        cases = []
        for k, shape in enumerate(CHECK_SHAPES):
            g = torch.Generator().manual_seed(self.args.seed + k)
            x = torch.randn(shape.x_shape, generator=g, dtype=torch.float64)
            w = 1 + 0.1 * torch.randn(shape.D, generator=g, dtype=torch.float64)
            b = 0.1 * torch.randn(shape.D, generator=g, dtype=torch.float64)
            dy = torch.randn(shape.x_shape, generator=g, dtype=torch.float64)
            results = []
            for dtype in (torch.float32, torch.float64):
                xs, ws, bs = (t.to(self.dev, dtype).requires_grad_() for t in (x, w, b))
                y = formula(shape.mode)(xs, ws, bs)
                grads = torch.autograd.grad(y, (xs, ws, bs), dy.to(self.dev, dtype))
                results.append([y.detach(), *grads])
            errs = {}
            for name, low, high in zip(('y', 'dx', 'dweight', 'dbias'), *results):
                scale = max(1.0, float(high.abs().max()))
                errs[name] = float((low.double() - high).abs().max()) / scale
            cases.append(
                {'shape': shape.label, 'max_rel_err': errs, 'ok': max(errs.values()) <= tol}
            )
        ok = all(c['ok'] for c in cases)
        self.result['checks'][precision] = {'tol': tol, 'ok': ok, 'cases': cases}
        self.failed |= not ok
        worst = max(max(c['max_rel_err'].values()) for c in cases)
        print(
            f'check: {precision} against float64: {"ok" if ok else "FAILED"}'
            f' (worst relative error {worst:.2e}, tolerance {tol:g})'
        )

    # rows

    def new_row(self, shape: Shape, precision: str, pass_name: str, impl: str) -> dict:
        flops, nbytes = work(shape.mode, shape.B, shape.N, shape.D, pass_name)
        return {
            'key': row_key(shape, precision, pass_name, impl),
            'mode': shape.mode,
            'B': shape.B,
            'N': shape.N,
            'D': shape.D,
            'precision': precision,
            'pass': pass_name,
            'impl': impl,
            'median_ms': None,
            'p10_ms': None,
            'p90_ms': None,
            'min_ms': None,
            'reps': 0,
            'warmup': 0,
            'buffers': 0,
            'flops': flops,
            'bytes': nbytes,
            'gflops': None,
            'gbps': None,
            'gemm_fraction': None,
            'copy_fraction': None,
            'peak_mem_bytes': None,
            'error': None,
        }

    def run_shape(self, shape: Shape, impl: str) -> None:
        """The rows of one shape and impl: allocate the inputs once, then each precision."""
        torch = self.torch
        rows = {
            (p, ps): self.new_row(shape, p, ps, impl)
            for p in self.args.precisions
            for ps in self.args.passes
        }
        self.result['rows'].extend(rows.values())

        # inputs: k buffers of x and of dy, one weight and bias, and a buffer to flush L2 with
        k = buffer_count(4 * shape.numel, self.l2_bytes)
        try:
            g = torch.Generator(device=self.dev).manual_seed(self.args.seed)
            xs = torch.randn((k, *shape.x_shape), generator=g, device=self.dev)
            dys = torch.randn((k, *shape.x_shape), generator=g, device=self.dev)
            weight = 1 + 0.1 * torch.randn(shape.D, generator=g, device=self.dev)
            bias = 0.1 * torch.randn(shape.D, generator=g, device=self.dev)
            flush = torch.empty(2 * self.l2_bytes // 4, device=self.dev)
            inputs = Inputs(xs, dys, weight.requires_grad_(), bias.requires_grad_(), flush, k)
        except Exception as e:  # out of memory, most likely
            for row in rows.values():
                row['error'] = f'inputs: {short_error(e)}'
                self.print_row(row)
            self.failed |= impl == 'eager'
            self.empty_cache()
            return

        for precision in self.args.precisions:
            group = [rows[(precision, ps)] for ps in self.args.passes]
            if self.elapsed() > self.args.budget_s:
                for row in group:
                    row['error'] = f'skipped: --budget-s {self.args.budget_s:g} reached'
                    self.print_row(row)
                continue
            state = self.set_precision(precision)
            self.run_group(shape, impl, group, inputs, state)
            self.save()
        del inputs, xs, dys, weight, bias, flush
        self.empty_cache()

    def run_group(self, shape: Shape, impl: str, group: list, inputs, state: dict) -> None:
        """The passes of one (shape, precision, impl); compiles first for impl 'compile'."""
        torch = self.torch
        fn = formula(shape.mode)
        extra = {'precision_state': state}
        if impl == 'compile':
            try:
                fn, extra['compile_s'], extra['compile_vs_eager'] = self.compile(fn, inputs)
            except Exception as e:
                for row in group:
                    row.update(extra, error=f'compile: {short_error(e)}')
                    self.print_row(row)
                self.reset_compiler()
                self.empty_cache()
                return
        for row in group:
            row.update(extra)
            try:
                self.time_row(row, fn, inputs)
            except Exception as e:
                row['error'] = short_error(e)
                self.failed |= impl == 'eager'
                self.empty_cache()
            self.print_row(row)
        del fn
        if impl == 'compile':
            self.reset_compiler()
        self.empty_cache()

    def compile(self, fn, inputs) -> tuple:
        """Compile fn for this shape and precision; time the compiling calls; compare to eager."""
        torch = self.torch
        if not hasattr(torch, 'compile'):
            raise RuntimeError(f'torch.compile is not available in torch {torch.__version__}')
        import torch._dynamo

        # a recompilation inside the timed calls would time the compiler, and past the cache
        # limit dynamo silently runs eager code: make either an error of the row instead
        torch._dynamo.reset()
        if hasattr(torch._dynamo.config, 'error_on_recompile'):
            torch._dynamo.config.error_on_recompile = True
        compiled = torch.compile(fn, dynamic=False)

        # the first forward compiles the forward graph, the first backward the backward graph
        x, dy = inputs.x(0), inputs.dy(0)
        t0 = time.perf_counter()
        y = compiled(x, inputs.weight, inputs.bias)
        got = torch.autograd.grad(y, (x, inputs.weight, inputs.bias), dy)
        self.timer.sync()
        seconds = time.perf_counter() - t0

        # the same call in eager mode, for the largest relative difference
        y_eager = fn(x, inputs.weight, inputs.bias)
        want = torch.autograd.grad(y_eager, (x, inputs.weight, inputs.bias), dy)
        diff = {}
        for name, a, b in zip(('y', 'dx', 'dweight', 'dbias'), (y, *got), (y_eager, *want)):
            scale = max(1.0, float(b.abs().max()))
            diff[name] = float((a.detach() - b.detach()).abs().max()) / scale
        return compiled, seconds, diff

    def reset_compiler(self) -> None:
        """Forget compiled code, so the next (shape, precision) compiles afresh."""
        dynamo = getattr(self.torch, '_dynamo', None)
        if dynamo is not None:
            dynamo.reset()

    def time_row(self, row: dict, fn, inputs) -> None:
        """Warm up, choose the number of calls from the warm-up times, time, measure memory."""
        torch, s = self.torch, self.s
        params = (inputs.weight, inputs.bias)
        pass_name = row['pass']

        # the pass as setup (untimed) and call (timed)
        if pass_name == 'forward':

            def setup(i):
                return inputs.x(i)

            def call(x):
                return fn(x, *params)

        elif pass_name == 'forward+backward':

            def setup(i):
                return inputs.x(i), inputs.dy(i)

            def call(a):
                x, dy = a
                y = fn(x, *params)
                return torch.autograd.grad(y, (x, *params), dy)

        else:
            # backward alone: the forward runs in setup, outside the timed region, then L2 is
            # flushed so the backward does not find in L2 what the forward just wrote (in
            # training the backward runs long after its forward); each timed call consumes a
            # fresh graph, so no retain_graph is needed and nothing is recomputed inside
            def setup(i):
                x = inputs.x(i)
                y = fn(x, *params)
                inputs.flush.zero_()
                return y, x, inputs.dy(i)

            def call(a):
                y, x, dy = a
                return torch.autograd.grad(y, (x, *params), dy)

        # warm up: the first call alone (lazy initialization), then the warm-up calls
        self.timer.run(setup, call, 0, 1)
        warm = self.timer.run(setup, call, 1, s.warmup)
        estimate = statistics.median(warm)
        reps = int(min(s.max_reps, max(s.min_reps, s.row_target_s / max(estimate * 1e-3, 1e-7))))

        # time
        first = 1 + s.warmup
        times = self.timer.run(setup, call, first, reps)
        ms = statistics.median(times)
        row.update(
            median_ms=ms,
            p10_ms=percentile(times, 0.1),
            p90_ms=percentile(times, 0.9),
            min_ms=min(times),
            reps=reps,
            warmup=1 + s.warmup,
            buffers=inputs.k,
            gflops=row['flops'] / (ms * 1e-3) / 1e9,
            gbps=row['bytes'] / (ms * 1e-3) / 1e9,
        )
        ceilings = self.result['ceilings']
        if ceilings:
            row['gemm_fraction'] = row['gflops'] / (
                ceilings['gemm'][row['precision']]['tflops'] * 1e3
            )
            row['copy_fraction'] = row['gbps'] / ceilings['copy']['gbps']
        row['peak_mem_bytes'] = self.peak_memory(pass_name, fn, inputs)

    def peak_memory(self, pass_name: str, fn, inputs):
        """Bytes live at once during one call: its inputs, what it saves and what it allocates.

        For the backward alone the state its forward saved counts too, since the backward
        cannot run without it. The other rotation buffers are not counted.
        """
        torch = self.torch
        if self.args.device != 'cuda':
            return None
        x, dy = inputs.x(0), inputs.dy(0)
        params = (inputs.weight, inputs.bias)
        own = x.numel() * 4 + sum(p.numel() * 4 for p in params)
        own += dy.numel() * 4 if pass_name != 'forward' else 0
        gc.collect()
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        y = fn(x, *params)
        if pass_name == 'backward':
            # from here on: what the forward left (y and its saved state) and the backward's own
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        if pass_name != 'forward':
            grads = torch.autograd.grad(y, (x, *params), dy)
            del grads
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base + own
        del y
        return int(peak)

    def print_row(self, row: dict) -> None:
        if row['error']:
            print(f'{row["key"]:<52} {row["error"]}')
            return
        frac = ''
        if row['gemm_fraction'] is not None:
            frac = (
                f'  {100 * row["gemm_fraction"]:5.1f}% gemm {100 * row["copy_fraction"]:5.1f}% copy'
            )
        mem = f'  {row["peak_mem_bytes"] / 2**20:9.1f} MiB' if row['peak_mem_bytes'] else ''
        print(
            f'{row["key"]:<52} {row["median_ms"]:9.4f} ms  {row["gflops"]:9.1f} GFLOP/s'
            f'  {row["gbps"]:8.1f} GB/s{frac}{mem}  ({row["reps"]} reps)'
        )

    # table

    def print_table(self) -> None:
        """The short table: a line per (shape, precision, pass), eager and compile side by side."""
        r = self.result
        print()
        print(
            f'PyTorch {r["device"]["torch"]} on {r["device"].get("name")}'
            f' (driver {r["device"].get("driver")}, CUDA {r["device"]["cuda_runtime"]})'
        )
        c = r['ceilings']
        if c:
            g = c['gemm']
            print(
                f'ceilings: GEMM {g["fp32"]["n"]}^3 fp32 {g["fp32"]["tflops"]:.1f} TFLOP/s,'
                f' tf32 {g["tf32"]["tflops"]:.1f} TFLOP/s; copy {c["copy"]["gbps"]:.0f} GB/s'
            )
        checks = ', '.join(f'{k} {"ok" if v["ok"] else "FAILED"}' for k, v in r['checks'].items())
        print(f'checks: {checks}')
        by_key = {row['key']: row for row in r['rows']}
        columns = (
            ('eager ms', 'eager', 'median_ms', '.4f', 1.0),
            ('compile ms', 'compile', 'median_ms', '.4f', 1.0),
            ('eager GF/s', 'eager', 'gflops', '.1f', 1.0),
            ('comp GF/s', 'compile', 'gflops', '.1f', 1.0),
            ('eager GB/s', 'eager', 'gbps', '.0f', 1.0),
            ('peak MiB', 'eager', 'peak_mem_bytes', '.1f', 2**20),
        )
        head = f'{"shape":<26} {"prec":<5} {"pass":<16}' + ''.join(f' {c[0]:>10}' for c in columns)
        print(head)
        print('-' * len(head))
        for shape in self.args.shapes:
            for precision in self.args.precisions:
                for pass_name in self.args.passes:
                    line = f'{shape.label:<26} {precision:<5} {pass_name:<16}'
                    for _, impl, field, fmt, div in columns:
                        row = by_key.get(row_key(shape, precision, pass_name, impl))
                        line += f' {table_cell(row, field, fmt, div):>10}'
                    print(line)
        print(f'full results: {self.path}')


def table_cell(row, field: str, fmt: str, div: float) -> str:
    """One cell of the short table: the value, or why there is none."""
    if row is None:
        return '-'
    if row['error']:
        return 'skipped' if row['error'].startswith('skipped') else 'error'
    value = row[field]
    return '-' if value is None else format(value / div, fmt)


class Inputs:
    """The rotation buffers of one shape; call i reads buffer i mod k."""

    def __init__(self, xs, dys, weight, bias, flush, k: int):
        self.xs, self.dys, self.k = xs, dys, k
        self.weight, self.bias, self.flush = weight, bias, flush

    def x(self, i: int):
        # a leaf view of buffer i, so torch.autograd.grad can return dx for it
        return self.xs[i % self.k].detach().requires_grad_()

    def dy(self, i: int):
        return self.dys[i % self.k]


def driver_version():
    """The NVIDIA driver version, from nvidia-smi or the kernel module; None if neither says."""
    try:
        out = subprocess.run(
            ['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader'],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        with open('/proc/driver/nvidia/version') as f:
            words = f.readline().split()
        return next((w for w in words if w[:1].isdigit() and '.' in w), None)
    except OSError:
        return None


def main(argv: list) -> int:
    args = parse_args(argv)

    # dry run: the plan, from the arguments alone
    if args.dry_run:
        print_plan(args, ASSUMED_L2_BYTES, False)
        for k, shape in enumerate(REFERENCE_SHAPES):
            reference_forward(*tiny_inputs(shape.B, shape.N, shape.D, seed=11 + k), shape.mode)
        print('dry run: arguments and output folder checked; nothing timed')
        return 0

    # torch and the device
    try:
        import torch
    except ImportError as e:
        print(f'torch_bench: cannot import torch ({e}); use --dry-run where torch is absent')
        return 3
    if args.device == 'cuda' and not torch.cuda.is_available():
        print('torch_bench: torch sees no CUDA device; use --dry-run, or --device cpu')
        return 3
    os.makedirs(args.out, exist_ok=True)
    bench = Bench(args, torch)
    l2 = bench.result['device'].get('l2_bytes')
    print_plan(args, bench.l2_bytes, bool(l2))
    print(f'device: {bench.result["device"].get("name")}, torch {torch.__version__}')

    # ceilings and checks, then the rows
    try:
        bench.ceilings()
    except Exception as e:  # the rows still run, without fractions of the ceilings
        bench.result['ceilings'] = {}
        bench.result['ceilings_error'] = short_error(e)
        print(f'ceilings: {short_error(e)}')
        bench.empty_cache()
    bench.check_reference()
    for precision in args.precisions:
        bench.set_precision(precision)
        bench.check_precision(precision)
    bench.save()
    for impl in args.impls:
        for shape in args.shapes:
            bench.run_shape(shape, impl)
            bench.save()
    bench.result['complete'] = True
    bench.save()
    bench.print_table()
    if bench.failed:
        print('torch_bench: a correctness check failed or an eager row could not run')
    return 1 if bench.failed else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
