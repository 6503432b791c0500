"""Tiled and untiled inference at Middlebury full resolution (about 2000×3000) on the CPU, and evaluation cost next to it.

1. `predict_disparity` with the real `DisparityModel` in RAFT-Stereo's default configuration (CNN encoders, three
   128-channel GRU levels, `reg` correlation at 1/4 resolution; random weights: time and memory do not depend on
   them): the whole pair at half (H) and full (F) Middlebury size, and the F pair in overlapping tiles. Each run is a
   fresh subprocess, so its peak resident memory (ru_maxrss) is its own; the whole F pair runs under an address-space
   limit (BENCH_MEM_GB, default 10) so that it cannot take a shared machine's memory: if it needs more, the table
   says so (that is what tiles are for). Each configuration runs 3 GRU iterations; a hook on the update block stamps
   the start of every iteration, so the time of one iteration (correlation lookup + GRU update) is measured inside
   the run, and RAFT-Stereo's 32 evaluation iterations are extrapolated from it: t(32) = t(3) + 29·(one iteration
   × tiles) (a 32-iteration run of a 2000×3000 pair takes the better part of an hour on one CPU thread). In
   evaluation mode only the last prediction is upsampled, so the peak memory does not grow with the iterations.
2. Metric throughput: `MetricAccumulator.update` on F-sized prediction/ground truth (random values), i.e. the whole
   per-image cost of `evaluate` except the model, in pairs per second, next to the model's time for one pair.

Usage: `[BENCH_THREADS=n] [BENCH_QUICK=1] [BENCH_MEM_GB=10] [BENCH_ONLY='tiled F,whole F'] python
tests/benchmarks/bench_eval.py` (or `tests/benchmarks/run.py eval`); BENCH_ONLY must name 'tiled F'. BENCH_QUICK=1
divides every size by 4 (a smoke run). Times are wall clock and CPU seconds; the header gives the date, the load
average and the device (no GPU is used). The metric table comes first (it takes seconds), then one line per model run.
"""
import json, os, subprocess, sys, time
import torch

THREADS = int(os.environ.get('BENCH_THREADS', 1))   # 1 by default: the machine the kit is built on is shared
QUICK = os.environ.get('BENCH_QUICK', '') not in ('', '0')
MEM_GB = float(os.environ.get('BENCH_MEM_GB', 10))  # address-space limit of the whole-F run
F_SIZE = (497, 741) if QUICK else (1988, 2964)       # MiddEval3 full resolution is up to about 2000×3000
H_SIZE = (F_SIZE[0] // 2, F_SIZE[1] // 2)
TILE, OVERLAP, MAX_DISP = (768, 1024), (64, 320), 256  # tiles overlap horizontally by more than the largest disparity
ITERS = 3
CONFIGS = {'tiled F': (F_SIZE, True), 'whole F': (F_SIZE, False), 'whole H': (H_SIZE, False)}   # the one that must fit first


def build_model():
    "RAFT-Stereo's default configuration, random weights, evaluation mode."
    from stereomae.disparity import DisparityModel
    torch.manual_seed(0)
    return DisparityModel().eval(), 'DisparityModel() (RAFT-Stereo CNN defaults: 3 GRU levels of 128, reg correlation, 1/4)'


def child(config: str, iters: int):
    "Run one prediction in this process; print its wall and CPU time and peak RSS (or the memory error) as JSON."
    import resource
    from stereomae.infer import predict_disparity
    torch.set_num_threads(THREADS)
    size, tiled = CONFIGS[config]
    if config == 'whole F':
        cap = int(MEM_GB * 2**30); resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    model, desc = build_model()
    stamps = []                                                                     # (wall, CPU) at every update-block call
    model.update_block.register_forward_pre_hook(lambda m, a: stamps.append((time.perf_counter(), time.process_time())))
    g = torch.Generator().manual_seed(0)
    left = torch.rand(1, 3, *size, generator=g)
    right = torch.roll(left, -40, -1)                                                # a constant 40 px disparity
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kw = dict(tile=TILE, overlap=OVERLAP, max_disp=MAX_DISP) if tiled else dict(max_pixels=None)
    t0, c0 = time.perf_counter(), time.process_time()
    res = dict(config=config, iters=iters, model=desc, before_mb=before)
    try:
        out = predict_disparity(model, left, right, iters=iters, **kw)
        res.update(tiles=out.tiles, finite=bool(torch.isfinite(out.disp).all()))
    except MemoryError as e: res.update(error=f'needs more than a {MEM_GB:g} GB address space')
    groups = [stamps[i:i + iters] for i in range(0, len(stamps) - iters + 1, iters)]  # one group per tile (pass)
    steps = [(b[0] - a[0], b[1] - a[1]) for g_ in groups for a, b in zip(g_, g_[1:])]
    if steps: res.update(iter_wall=sum(x for x, _ in steps) / len(steps) * len(groups),   # one iteration over all tiles
                         iter_cpu=sum(c for _, c in steps) / len(steps) * len(groups))
    res.update(wall=time.perf_counter() - t0, cpu=time.process_time() - c0,
               peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(res))


def metric_rate(protocol: str, n: int = 5) -> tuple[float, float]:
    "Pairs per second of `MetricAccumulator.update` at F size (the evaluation cost without the model): wall, CPU."
    from stereomae.metrics import MetricAccumulator
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(*F_SIZE, generator=g) * 200
    pred = gt + torch.randn(*F_SIZE, generator=g)
    valid, nocc = torch.rand(*F_SIZE, generator=g) > 0.1, torch.rand(*F_SIZE, generator=g) > 0.2
    acc = MetricAccumulator(protocol)
    calib = dict(focal=1000., baseline=100.)
    acc.update(pred, gt, valid, nocc, calib=calib)                                   # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n): acc.update(pred, gt, valid, nocc, calib=calib)
    return n / (time.perf_counter() - t0), n / (time.process_time() - c0)


def header() -> str:
    gpu = 'a GPU is present but not used' if torch.cuda.is_available() else 'no GPU'
    load = ', '.join(f'{x:.1f}' for x in os.getloadavg())
    return (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average {load} (1, 5, 15 min) on "
            f"{os.cpu_count()} CPUs; {gpu}; torch {torch.__version__}, {THREADS} thread(s); H {H_SIZE[0]}×{H_SIZE[1]}, "
            f"F {F_SIZE[0]}×{F_SIZE[1]}")


def main():
    print(header() + '\n', flush=True)
    print('| metrics only (MetricAccumulator.update) | pairs/s (wall) | pairs/s (CPU time) | CPU ms/pair |\n|---|---|---|---|')
    rates = {}
    for p in ('middlebury_F', 'kitti2015', 'scared'):
        rate, cpu = rates[p] = metric_rate(p)
        print(f'| {p} | {rate:.2f} | {cpu:.2f} | {1000 / cpu:.0f} |', flush=True)
    print()
    runs = {}
    for config in CONFIGS:
        if os.environ.get('BENCH_ONLY') and config not in os.environ['BENCH_ONLY'].split(','): continue
        r = subprocess.run([sys.executable, __file__, '--child', config, str(ITERS)], capture_output=True, text=True,
                           timeout=3600)
        if r.returncode != 0: raise SystemExit(f'{config} run failed:\n{r.stderr[-2000:]}')
        runs[config] = x = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"  {config}: {x['wall']:.0f} s wall, {x['cpu']:.0f} s CPU, {x['peak_mb']:.0f} MB peak"
              f"{' (' + x['error'] + ')' if 'error' in x else ''} ({time.strftime('%H:%M', time.gmtime())}, "
              f"load {os.getloadavg()[0]:.1f})\n    {json.dumps(x)}", flush=True)
    print(f"\nmodel: {runs['tiled F']['model']}; tiles of {TILE[0]}×{TILE[1]} overlapping by {OVERLAP[0]}×{OVERLAP[1]} "
          f"(largest disparity {MAX_DISP} px)\n")
    print(f'| predict_disparity | tiles | peak RSS (MB) | {ITERS} iterations, wall / CPU (s) | one iteration (all tiles), '
          'wall / CPU (s) | 32 iterations, extrapolated wall / CPU (s) |\n|---|---|---|---|---|---|')
    est = {}
    for config, x in runs.items():
        if 'error' in x:
            print(f"| {config} | - | {x['peak_mb']:.0f} when it failed | - | - | {x['error']} |"); continue
        est[config] = {k: x[k] + (32 - ITERS) * x[f'iter_{k}'] for k in ('wall', 'cpu')}
        print(f"| {config} | {x['tiles']} | {x['peak_mb']:.0f} | {x['wall']:.0f} / {x['cpu']:.0f} "
              f"| {x['iter_wall']:.1f} / {x['iter_cpu']:.1f} | {est[config]['wall']:.0f} / {est[config]['cpu']:.0f} |")
    print(f"\n(resident memory after imports, model and inputs, before the call: {runs['tiled F']['before_mb']:.0f} MB)")
    model_cpu = est['tiled F']['cpu']
    print('\nMetrics next to the model (CPU time per pair): ' + ', '.join(
        f'{p} {100 / cpu / model_cpu:.3f} %' for p, (_, cpu) in rates.items()) + ' of one tiled 32-iteration prediction')
    print(f"\n(finished {time.strftime('%H:%M UTC', time.gmtime())}, load average {os.getloadavg()[0]:.1f})")


if __name__ == '__main__':
    if len(sys.argv) == 4 and sys.argv[1] == '--child': child(sys.argv[2], int(sys.argv[3]))
    else: main()
