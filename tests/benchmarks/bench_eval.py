"""Evaluation cost next to the model, and tiled inference at Middlebury full resolution (about 2000×2900) on the CPU.

1. Metric throughput: `MetricAccumulator.update` on Middlebury-F-sized prediction/ground truth (random values), i.e.
   the whole per-image cost of `evaluate` except the model, in pairs per second.
2. `predict_disparity` on one F-sized pair, whole and in tiles, each in a fresh subprocess so that its peak resident
   memory (ru_maxrss) is its own. The model is `DisparityModel` when its chapter provides a small preset, else a
   stand-in (a 2-layer CNN, a 1-D cost volume at 1/4 resolution over 256 px, soft-argmin); the table says which.
"""
import json, subprocess, sys, time
import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

F_SIZE = (1988, 2964)   # MiddEval3 full resolution is up to about 2000×3000
MAX_DISP = 256


class TinyStereo(nn.Module):
    "Stand-in: features at 1/4 resolution, 1-D correlation volume over max_disp/4 levels, soft-argmin, ×4 upsampling."
    def __init__(self, max_disp: int = MAX_DISP, ch: int = 16):
        super().__init__()
        self.D = max_disp // 4
        self.feat = nn.Sequential(nn.Conv2d(3, ch, 5, 2, 2), nn.ReLU(), nn.Conv2d(ch, ch, 3, 2, 1))

    def forward(self, left, right, iters=1):
        fl, fr = self.feat(left), self.feat(right)                                   # (B, C, H/4, W/4)
        W = fl.shape[-1]
        cost = torch.stack([F.pad((fl[..., d:] * fr[..., :W - d]).mean(1), (d, 0)) for d in range(self.D)], 1)  # (B, D, h, w)
        disp = (cost.softmax(1) * torch.arange(self.D, dtype=cost.dtype).view(1, -1, 1, 1)).sum(1, keepdim=True)
        from stereomae.infer import DisparityPrediction
        return DisparityPrediction(4 * F.interpolate(disp, scale_factor=4, mode='bilinear', align_corners=False))


def build_model():
    "A small `DisparityModel` if the kit has one with a small preset, else the stand-in. Returns (model, description)."
    try:
        from stereomae.disparity import DisparityModel
        small = getattr(DisparityModel, 'small', None) or getattr(DisparityModel, 'tiny', None)
        if callable(small): return small(), 'DisparityModel (small preset)'
    except ImportError: pass
    return TinyStereo(), f'stand-in TinyStereo (CNN + 1-D cost volume over {MAX_DISP} px; DisparityModel not available)'


def child(mode: str):
    "Run one prediction in this process; print its time and peak RSS as JSON."
    import resource
    from stereomae.infer import predict_disparity
    torch.manual_seed(0)
    model, desc = build_model()
    g = torch.Generator().manual_seed(0)
    left = torch.rand(1, 3, *F_SIZE, generator=g)
    right = torch.roll(left, -40, -1)                                                # a constant 40 px disparity
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    kw = dict(tile=(512, 768), overlap=(64, 320), max_disp=MAX_DISP) if mode == 'tiled' else dict(max_pixels=None)
    out = predict_disparity(model, left, right, iters=1, **kw)
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(dict(mode=mode, seconds=dt, peak_mb=peak, before_mb=base, tiles=out.tiles, model=desc)))


def metric_rate(protocol: str, n: int = 5) -> tuple[float, float]:
    "Pairs per second of `MetricAccumulator.update` at Middlebury-F size (the evaluation cost without the model): wall, CPU."
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


def main():
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, pair {F_SIZE[0]}×{F_SIZE[1]}\n')
    runs = {}
    for mode in ('whole', 'tiled'):
        r = subprocess.run([sys.executable, __file__, '--child', mode], capture_output=True, text=True, timeout=1200)
        if r.returncode != 0: raise SystemExit(f'{mode} run failed:\n{r.stderr[-2000:]}')
        runs[mode] = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"model: {runs['whole']['model']}\n")
    print('| predict_disparity | tiles | time (s) | peak RSS (MB) | RSS before the call (MB) |\n|---|---|---|---|---|')
    for m, r in runs.items():
        print(f"| {m} | {r['tiles']} | {r['seconds']:.1f} | {r['peak_mb']:.0f} | {r['before_mb']:.0f} |")
    model_s = runs['tiled']['seconds']
    print('\n| metrics only (MetricAccumulator.update) | pairs/s (wall) | pairs/s (CPU time) | ms/pair (wall) | share of one tiled model pass |'
          '\n|---|---|---|---|---|')
    for p in ('middlebury_F', 'kitti2015', 'scared'):
        rate, cpu = metric_rate(p)
        print(f'| {p} | {rate:.2f} | {cpu:.2f} | {1000 / rate:.0f} | {100 / rate / model_s:.1f} % |')


if __name__ == '__main__':
    if len(sys.argv) == 3 and sys.argv[1] == '--child': child(sys.argv[2])
    else: main()
