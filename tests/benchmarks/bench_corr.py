"""Correlation lookup, `reg` (all-pairs volume) against `alt` (bands computed on the fly): time and peak memory.

Features at 1/4 resolution (D = 256) of a 384×768 pair and of a full Middlebury-F pair (2016×2912 once padded to a
multiple of 32, so 504×728 at 1/4). Each measurement runs in its own process, so that its peak resident memory
(`ru_maxrss`) is its own; the extra memory is that peak minus the resident size once the two feature maps exist.
The time of one update-block iteration (three GRU levels, default sizes) at the same resolution gives the scale
of the whole decoder: the last table compares `reg` and `alt` over 32 iterations of lookup + update.
Times are CPU seconds of one-thread processes (see `bench_disparity.py`).
Usage: `[BENCH_THREADS=n] python tests/benchmarks/bench_corr.py [--quick]` (or through `tests/benchmarks/run.py corr`).
"""
import json, math, os, resource, subprocess, sys, time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_matmul import rss_bytes  # noqa: E402
SIZES = {'384×768': (96, 192), 'Middlebury-F (2016×2912)': (504, 728)}
ITERS = 32
THREADS = int(os.environ.get('BENCH_THREADS', 1))  # one thread, timed in CPU seconds (steady on a shared machine)
clock = time.process_time  # CPU time: with one thread, the cost on a core of its own; compare wall times when THREADS > 1


def _disparity(H, W):
    "A plausible disparity field at 1/4 resolution: smooth slants and a few depth steps, up to about W/6."
    import torch
    y, x = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing='ij')
    d = W / 12 * (1 + 0.5 * torch.sin(x / 37) * torch.cos(y / 23)) + W / 24 * ((x // (W / 5)) % 2)
    return d[None, None]


def measure_corr(H, W, impl, lookups):
    "In this process: build the pyramid and run `lookups` lookups; seconds and bytes."
    import torch
    from stereomae.corr import CorrPyramid1D
    g = torch.Generator().manual_seed(0)
    fl, fr = torch.randn(1, 256, H, W, generator=g), torch.randn(1, 256, H, W, generator=g)
    disp = _disparity(H, W)
    base = rss_bytes()
    t0 = clock(); corr = CorrPyramid1D(fl, fr, impl=impl); t1 = clock()
    for _ in range(lookups): out = corr(disp)
    t2 = clock()
    assert out.shape == (1, 36, H, W)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return dict(build=t1 - t0, lookup=(t2 - t1) / lookups, extra=peak - base, peak=peak)


def measure_update(H, W, repeats):
    "In this process: seconds per call of the default 3-level update block (with the disparity head, no mask)."
    import torch
    from stereomae.update import MultiLevelUpdateBlock
    g = torch.Generator().manual_seed(0)
    block = MultiLevelUpdateBlock().eval()
    sizes = [(H, W), ((H + 1) // 2, (W + 1) // 2), ((H + 3) // 4, (W + 3) // 4)]
    net = [torch.randn(1, 128, *s, generator=g).tanh() for s in sizes]
    ctx = [[torch.randn(1, 128, *s, generator=g) for _ in range(3)] for s in sizes]
    corr, disp = torch.randn(1, 36, H, W, generator=g), _disparity(H, W)
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            t0 = clock(); block(net, ctx, corr, disp); times.append(clock() - t0)
    return dict(update=min(times))


def _run(kind, *args):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    if THREADS: env['OMP_NUM_THREADS'] = str(THREADS)
    r = subprocess.run([sys.executable, __file__, '--one', kind, *map(str, args)], capture_output=True, text=True, env=env)
    if r.returncode: raise RuntimeError(f'{kind} {args} failed:\n{r.stderr[-2000:]}')
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(quick=False):
    import torch
    print(f'torch {torch.__version__}, {THREADS or torch.get_num_threads()} threads, fp32 CPU, times in CPU seconds, load average {os.getloadavg()[0]:.1f}; {ITERS} iterations; '
          f'features (1, 256, H/4, W/4); peak = max RSS of a fresh process, extra = peak − RSS with the features\n')
    sizes = dict(list(SIZES.items())[:1]) if quick else SIZES
    rows = {}
    for name, (H, W) in sizes.items():
        lookups = 5 if H * W < 10 ** 5 else 3
        for impl in ('reg', 'alt'): rows[name, impl] = _run('corr', H, W, impl, lookups)
        rows[name, 'update'] = _run('update', H, W, 2 if H * W < 10 ** 5 else 1)
    print('| size (1/4 res) | impl | build s | lookup s | build + 32 lookups s | alt / reg | extra MiB | peak MiB | reg / alt extra |')
    print('|---|---|---|---|---|---|---|---|---|')
    for name, (H, W) in sizes.items():
        reg = rows[name, 'reg']
        for impl in ('reg', 'alt'):
            r = rows[name, impl]
            total, reg_total = r['build'] + ITERS * r['lookup'], reg['build'] + ITERS * reg['lookup']
            print(f"| {name} ({H}×{W}) | {impl} | {r['build']:.3f} | {r['lookup']:.3f} | {total:.1f} | "
                  f"{total / reg_total:.2f} | {r['extra'] / 2**20:.0f} | {r['peak'] / 2**20:.0f} | "
                  f"{reg['extra'] / max(r['extra'], 1):.1f} |")
    print('\nThe decoder at the same resolution: 32 × (lookup + one update-block iteration, 3 GRU levels, 128 channels) '
          '+ the pyramid build.\n')
    print('| size (1/4 res) | update s / iter | reg decoder s | alt decoder s | alt / reg | lookup share of an alt iteration |')
    print('|---|---|---|---|---|---|')
    for name, (H, W) in sizes.items():
        u = rows[name, 'update']['update']
        reg, alt = rows[name, 'reg'], rows[name, 'alt']
        dec = {k: v['build'] + ITERS * (v['lookup'] + u) for k, v in (('reg', reg), ('alt', alt))}
        print(f"| {name} ({H}×{W}) | {u:.2f} | {dec['reg']:.0f} | {dec['alt']:.0f} | {dec['alt'] / dec['reg']:.2f} | "
              f"{alt['lookup'] / (alt['lookup'] + u):.0%} |")


if __name__ == '__main__':
    if len(sys.argv) > 2 and sys.argv[1] == '--one':
        kind, args = sys.argv[2], sys.argv[3:]
        if kind == 'corr': res = measure_corr(int(args[0]), int(args[1]), args[2], int(args[3]))
        else: res = measure_update(int(args[0]), int(args[1]), int(args[2]))
        print(json.dumps(res))
    else:
        main(quick='--quick' in sys.argv)
