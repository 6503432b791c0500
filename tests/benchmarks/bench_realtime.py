"""Batch-1 GPU inference without launch overhead: the eager model against `stereomae.export.RealtimeDisparity` (the whole
forward captured once as a CUDA graph and replayed; with `--compile`, torch.compile's fused kernels captured the same
way), in fp32, bf16 and fp16.

Measured once on a lent H200 (2026-12-04; the tables are on the benchmarks page and in chapter `09b_export`):

    python tests/benchmarks/bench_realtime.py            # eager and graph rows, both configurations (about a minute)
    python tests/benchmarks/bench_realtime.py --compile  # adds the torch.compile rows (compiling 32 unrolled iterations took 163 s)

Without a CUDA GPU it says so and measures nothing.

Configurations: RAFT-Stereo's default CNN (32 iterations) and its real-time configuration (shared backbone, 1/8, two
GRU levels, slow-fast; 7 iterations) at 384×1248 (KITTI size). Random weights with damped update steps: the time does
not depend on the weights, and damped steps keep a random recurrence from amplifying rounding, so the differences
measure the graph, not chaos.

How it measures:
* ms per pair: median over `reps` calls (after `warmup` calls) of the wall time of one call between two
  `torch.cuda.synchronize()`, batch 1. Eager rows call `DisparityModel.forward` as a user does (its input check reads
  two numbers back to the host); graph rows call `RealtimeDisparity` (input copies into the graph's buffers, one replay,
  the output copy).
* pairs per second = 1000 / ms; speed-up = eager fp32 ms / this row's ms, measured in the same run.
* largest |disparity difference| in px from eager fp32, and from eager at the row's own precision (a graph replays the
  eager kernels, so that one should be ~0; compiled kernels may round differently).
* peak GPU memory of the row (`torch.cuda.max_memory_allocated`) and the build time (copy, warm-up, capture, compile).
A row that fails prints its error in the table instead of numbers; the others still run.

`--quick`: the same code on a CPU with a tiny model at 64×128 and 2 iterations (no graph exists on a CPU:
`RealtimeDisparity` calls the same function at every call; the compile row uses the `aot_eager` backend, which needs no
C++ compiler). The test suite runs it that way.
"""
import copy, statistics, sys, time

import torch

SIZE = (384, 1248)
DTYPES = ('fp32', 'bf16', 'fp16')
TARGETS = {'default': 25.0, 'real-time': 100.0}   # pairs per second asked for on an H200 (issue 20)


def damped(model):
    with torch.no_grad():
        for p in model.update_block.flow_head.conv2.parameters(): p.mul_(0.2)
    return model.eval()


def configs(quick: bool):
    from stereomae.disparity import RAFT_STEREO_REALTIME
    if quick:
        return [('tiny real-time', dict(RAFT_STEREO_REALTIME, hidden_dims=(32,), feature_dim=32, motion_dim=16, head_dim=32), 2)]
    return [('default', {}, 32), ('real-time', RAFT_STEREO_REALTIME, 7)]


def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize(device)


def time_calls(f, device, warmup: int, reps: int):
    "Median wall seconds of one synchronised call, and the last output."
    for _ in range(warmup): out = f()
    times = []
    for _ in range(reps):
        sync(device); t0 = time.perf_counter()
        out = f()
        sync(device); times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def peak_reset(device):
    if device.type == 'cuda': torch.cuda.reset_peak_memory_stats(device)


def memory(gb: float) -> str:
    return 'n/a (CPU)' if gb != gb else f'{gb:.2f} GB'


def peak(device):
    return torch.cuda.max_memory_allocated(device) / 1e9 if device.type == 'cuda' else float('nan')


def run_row(row: dict, build, device, warmup: int, reps: int) -> dict:
    "Build the callable (timed), time its calls; an exception becomes the row's error."
    try:
        peak_reset(device); t0 = time.perf_counter()
        call = build(); sync(device)
        row['build'] = time.perf_counter() - t0
        with torch.no_grad(): row['secs'], out = time_calls(call, device, warmup, reps)
        row.update(out=out.float().cpu(), peak=peak(device))
    except Exception as e: row['error'] = f'{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ""}'
    return row


def measure(quick: bool = False, compile_: bool = False, reps: int = 30, warmup: int = 3) -> list[dict]:
    from stereomae.disparity import DisparityModel
    from stereomae.export import RealtimeDisparity
    device = torch.device('cpu' if quick else 'cuda')
    size = (64, 128) if quick else SIZE
    reps, warmup = (2, 1) if quick else (reps, warmup)
    rows = []
    for name, opts, iters in configs(quick):
        torch.manual_seed(0)
        with torch.device(device): model = damped(DisparityModel(**opts))
        g = torch.Generator(device=device).manual_seed(0)
        left = torch.rand(1, 3, *size, device=device, generator=g); right = left.roll(-6, -1)
        eager = {}                                                          # precision -> eager disparity
        for dt in DTYPES:
            if quick and dt == 'fp16': continue          # fp16 autocast on a CPU is not what this checks
            def build(dt=dt):
                m = copy.deepcopy(model); m.autocast_dtype = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}[dt]
                return lambda: m(left, right, iters=iters).disp
            rows.append(run_row(dict(config=name, iters=iters, mode='eager', dtype=dt), build, device, warmup, reps))
            if 'out' in rows[-1]: eager[dt] = rows[-1]['out']
        modes = [('graph', 'inductor')] + ([('compile', 'aot_eager' if quick else 'inductor')] if compile_ or quick else [])
        for mode, backend in modes:
            for dt in DTYPES:
                if quick and (dt == 'fp16' or (mode == 'compile' and dt != 'fp32')): continue
                def build(dt=dt, mode=mode, backend=backend):
                    rt = RealtimeDisparity(model, size, iters=iters, dtype=dt, mode=mode, backend=backend)
                    return lambda: rt(left, right).disp
                label = mode if backend == 'inductor' else f'{mode} ({backend})'
                rows.append(run_row(dict(config=name, iters=iters, mode=label, dtype=dt), build, device, warmup, reps))
        base = next((r for r in rows if r['config'] == name and r['mode'] == 'eager' and r['dtype'] == 'fp32' and 'out' in r), None)
        for r in rows:
            if r['config'] != name or 'out' not in r or base is None: continue
            r['speedup'] = base['secs'] / r['secs']
            r['diff'] = (r['out'] - base['out']).abs().max().item()
            if r['mode'] != 'eager' and r['dtype'] in eager: r['same'] = (r['out'] - eager[r['dtype']]).abs().max().item()
        for r in rows: r.pop('out', None)
    return rows


def main(quick: bool = False, compile_: bool = False, reps: int = 30):
    if not quick and not torch.cuda.is_available():
        print('No CUDA GPU here: nothing measured. Run this file on a lent GPU; `--quick` checks the code on a CPU.')
        return []
    dev = 'CPU (--quick: a check of the code path, not a measurement)' if quick else \
        f'{torch.cuda.get_device_name()} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()})'
    print(f'{dev}; torch {torch.__version__}; batch 1, {"64×128" if quick else "384×1248"}; ms per pair = median wall time '
          'of one synchronised call\n')
    rows = measure(quick, compile_, reps)
    print('| configuration | iterations | mode | precision | ms per pair | pairs/s | speed-up over eager fp32 | '
          'largest diff. from eager fp32 | from eager, same precision | build | peak memory |')
    print('|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|')
    for r in rows:
        head = f"| {r['config']} | {r['iters']} | {r['mode']} | {r['dtype']} |"
        if 'error' in r: print(head + f" failed: {r['error']} | | | | | | |"); continue
        same = f"{r['same']:.1e} px" if 'same' in r else ''
        if 'speedup' not in r: r.update(speedup=float('nan'), diff=float('nan'))
        print(head + f" {r['secs'] * 1e3:.1f} | {1 / r['secs']:.1f} | {r['speedup']:.2f}× | {r['diff']:.1e} px | {same} | "
                     f"{r['build']:.1f} s | {memory(r['peak'])} |")
    if not quick:
        print()
        for name, target in TARGETS.items():
            best = max((r for r in rows if r['config'] == name and 'secs' in r), key=lambda r: 1 / r['secs'], default=None)
            if best: print(f"{name}: best {1 / best['secs']:.0f} pairs/s ({best['mode']}, {best['dtype']}); target {target:.0f}: "
                           f"{'met' if 1 / best['secs'] >= target else 'NOT met'}")
        for name in TARGETS:
            g = {r['dtype']: r['secs'] for r in rows if r['config'] == name and r['mode'] == 'graph' and 'secs' in r}
            if 'fp32' in g and 'bf16' in g: print(f"{name}, graph: bf16 {'faster' if g['bf16'] < g['fp32'] else 'NOT faster'} than fp32 "
                                                   f"({g['bf16'] * 1e3:.1f} against {g['fp32'] * 1e3:.1f} ms)")
    return rows


if __name__ == '__main__':
    reps = int(sys.argv[sys.argv.index('--reps') + 1]) if '--reps' in sys.argv else 30
    main(quick='--quick' in sys.argv, compile_='--compile' in sys.argv, reps=reps)
