"""Data-loading rate: decoded SceneFlow-sized (540×960) samples per second through the real `SceneFlow` class.

A few random PNG pairs and PFM disparities are written to a temporary folder in the SceneFlow layout; the loader
reads them with 0, 1 and 2 DataLoader workers (batch 1, each pair repeated so every setting reads the same number
of samples). RAFT-Stereo's dense augmentation (`stereomae.augment.StereoAugmentor`, crop 320×720) is timed too when
that module is present; otherwise only decoding is measured. A RAFT-Stereo training step at batch 8 takes
about 0.3–0.6 s on a current GPU, so the loader must deliver roughly 15–30 samples/s to keep it busy.
"""
import os, tempfile, time
from pathlib import Path

import numpy as np
import torch

from stereomae.data import SceneFlow, make_loader
from stereomae.io import write_image, write_pfm, read_image, read_disparity

H, W = 540, 960


def write_tree(root: Path, n: int = 4):
    "n SceneFlow-style pairs (FlyingThings3D TRAIN layout) of 540×960 random-texture PNGs with PFM disparity."
    rng = np.random.default_rng(0)
    for i in range(n):
        base = root/'FlyingThings3D'/'frames_cleanpass'/'TRAIN'/'A'/f'{i:04d}'
        # smooth-ish texture so PNG sizes resemble rendered frames (about 1 MB each), not incompressible noise
        small = rng.integers(0, 255, (H // 4, W // 4 + 16, 3), dtype=np.uint8)
        img = np.repeat(np.repeat(small, 4, 0), 4, 1)
        write_image(base/'left'/'0006.png', img[:, :W]); write_image(base/'right'/'0006.png', img[:, 16:W + 16])
        write_pfm(root/'FlyingThings3D'/'disparity'/'TRAIN'/'A'/f'{i:04d}'/'left'/'0006.pfm',
                  rng.uniform(0, 200, (H, W)).astype(np.float32))


def augments():
    "Pipelines to time: plain decoding, and RAFT-Stereo's dense augmentation when `stereomae.augment` is installed."
    out = {'decode only': None}
    try: from stereomae.augment import StereoAugmentor
    except ImportError: return out
    out['decode + StereoAugmentor (dense, crop 320×720)'] = StereoAugmentor(crop_size=(320, 720))
    return out


def rate(ds, workers: int, samples: int) -> float:
    "Samples per second over `samples` samples (after one warm-up batch that also starts the workers)."
    it = iter(make_loader(ds, batch_size=1, shuffle=False, num_workers=workers))
    next(it)
    t0 = time.perf_counter()
    for _ in range(samples - 1): next(it)
    return (samples - 1) / (time.perf_counter() - t0)


def best_ms(fn, repeats: int = 5) -> float:
    "Best-of-`repeats` milliseconds of one call."
    best = float('inf')
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(); best = min(best, time.perf_counter() - t0)
    return best * 1000


def main(samples: int = 24):
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; '
          f'{samples} samples of {H}×{W} (PNG pair + PFM) per setting, batch 1\n')
    with tempfile.TemporaryDirectory() as d:
        write_tree(Path(d))
        sizes = sum(p.stat().st_size for p in Path(d).rglob('*') if p.is_file()) / 4 / 2**20
        print(f'one sample on disk: {sizes:.1f} MB\n')
        ds = SceneFlow(d, 'flyingthings3d'); f = ds.files[0]
        print('| stage (main process) | ms |\n|---|---|')
        for name, fn in (('read_image (one PNG)', lambda: read_image(f.left)), ('read_disparity (PFM)', lambda: read_disparity(f.disp)),
                         ('whole sample (2 PNG + PFM + tensors)', lambda: ds[0])):
            print(f'| {name} | {best_ms(fn):.0f} |')
        print('\n| pipeline | workers | samples/s | ms/sample |\n|---|---|---|---|')
        for name, aug in augments().items():
            ds = SceneFlow(d, 'flyingthings3d', aug=aug) * (samples // 4 + 1)
            for w in (0, 1, 2):
                r = rate(ds, w, samples)
                print(f'| {name} | {w} | {r:.1f} | {1000 / r:.0f} |', flush=True)


if __name__ == '__main__':
    main()
