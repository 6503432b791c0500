"""Inference speed and peak memory of `DisparityModel` (fp32, CPU unless a GPU is present), 32 GRU iterations.

Every configuration runs in a fresh subprocess, so its peak resident memory is its own: the table reports seconds
per pair and the peak increase of resident memory over the process after the model and the inputs exist.
`python tests/benchmarks/bench_disparity.py [--quick] [--middlebury]`: `--quick` runs only 256×512, `--middlebury`
adds the full Middlebury-F size (about 2000×2900; long on a CPU).

The ratio that matters is measured side by side in one run: the CNN model with the upsampling-mask head at every
iteration (what RAFT-Stereo's published code does at inference) against the mask head at the last iteration only.
"""
import json, os, resource, subprocess, sys, time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# RAFT-Stereo's reference figure (about 34 s at 384×768, 32 iterations) was taken with 2 threads on an idle machine;
# on a CPU shared with other jobs 2 threads mostly wait for each other: BENCH_THREADS=1 gives steadier ratios there.
THREADS = int(os.environ.get('BENCH_THREADS', 2))


def _rss_bytes() -> int:
    with open('/proc/self/statm') as f: return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def run_one(backbone: str, impl: str, H: int, W: int, iters: int = 32, mask_every_iter: bool = False) -> dict:
    "Time one inference of a fresh model in this process; peak memory is meaningful only in a fresh process."
    import torch
    from stereomae.disparity import DisparityModel
    torch.set_num_threads(THREADS); torch.manual_seed(0)
    if backbone == 'cnn': model = DisparityModel(corr_implementation=impl)
    else:
        from stereomae.vit import ViTEncoder
        model = DisparityModel.from_encoder(ViTEncoder(img_size=(H, W)), corr_implementation=impl)  # ViT-B/16
    model.eval().mask_every_iter = mask_every_iter
    dev = 'cuda' if torch.cuda.is_available() else 'cpu'
    model.to(dev)
    left, right = torch.rand(1, 3, H, W, device=dev), torch.rand(1, 3, H, W, device=dev)
    base = _rss_bytes()
    if dev == 'cuda': torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    with torch.no_grad(): model(left, right, iters=iters)
    if dev == 'cuda': torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated() if dev == 'cuda' else
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base)
    return dict(secs=secs, peak_gb=peak / 2**30, device=dev)


def measure(**kw) -> dict:
    "`run_one` in a fresh Python process."
    code = f"import json, bench_disparity as b; print(json.dumps(b.run_one(**{kw!r})))"
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{Path(__file__).parent}", OMP_NUM_THREADS=str(THREADS))
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env)
    if r.returncode: raise RuntimeError(f'{kw} failed:\n{r.stderr[-2000:]}')
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=()):
    argv = list(argv or sys.argv[1:])
    sizes = [(256, 512)] + ([] if '--quick' in argv else [(384, 768)]) + ([(1984, 2880)] if '--middlebury' in argv else [])
    print(f'{THREADS} thread(s), fp32, 32 iterations, batch 1, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n')
    print('| backbone | corr | size | s / pair | peak +GB |\n|---|---|---|---|---|')
    for H, W in sizes:
        for backbone in ('cnn', 'vit'):
            for impl in ('reg', 'alt'):
                m = measure(backbone=backbone, impl=impl, H=H, W=W)
                print(f'| {backbone} | {impl} | {H}×{W} | {m["secs"]:.1f} | {m["peak_gb"]:.2f} |', flush=True)
    H, W = sizes[-1] if '--middlebury' not in argv else sizes[-2]
    print(f'\nMask head at every iteration (RAFT-Stereo) vs at the end only, CNN, reg, {H}×{W}, side by side:\n')
    print('| mask head | s / pair |\n|---|---|')
    every, end = [], []
    for _ in range(2):  # interleaved, so load changes on a shared machine hit both alike
        every.append(measure(backbone='cnn', impl='reg', H=H, W=W, mask_every_iter=True)['secs'])
        end.append(measure(backbone='cnn', impl='reg', H=H, W=W)['secs'])
    print(f'| every iteration | {min(every):.1f} |\n| last iteration only | {min(end):.1f} |')
    print(f'\nspeed-up from running the mask head only where its output is used: {min(every) / min(end):.3f}×')


if __name__ == '__main__':
    main()
