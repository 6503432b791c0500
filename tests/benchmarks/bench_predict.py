"""`stereomae predict` over a folder of pairs on the CPU, with each model source: the time per pair at Motorcycle size
(500×741, the bundled pair), and what the resolver and the writers cost next to the model's own time (goal: 5 % at most).

Model sources, each loaded through `stereomae.builders.resolve_model` as the command line does (networks have random
weights: their time does not depend on them):
- `sgbm`: OpenCV's semi-global matching, `num_disp` 128 (the command line's default);
- a kit run: a run directory with the Models page's CPU-trained architecture (RAFT-Stereo's real-time CNN layout,
  64-channel GRUs), written by `save_weights` with its metadata as a training run writes it; 32 iterations;
- RAFT-Stereo checkpoints in the published layout (written by the kit, with `module.` prefixes): `raftstereo-realtime.pth`
  (7 iterations, as RAFT-Stereo's README runs it) and the default architecture of the SceneFlow, Middlebury and ETH3D
  checkpoints (`raftstereo-eth3d.pth`; 32 iterations).

For each source: the resolver's time (once per run), then `predict_pairs` over a folder of BENCH_PAIRS copies of the
Motorcycle pair (default 2) writing png, npy and pfm (the command line's default formats): wall time per pair, the
model's own time per pair (`predict_disparity`'s seconds), and the overhead of everything
else (pair listing, folders, the three writers, the summary line) as a share of the model's time. A last row writes
every format (KITTI PNG, depth, point cloud, the left-right confidence) with SGBM.

Usage: `[BENCH_THREADS=n] [BENCH_PAIRS=k] [BENCH_ONLY=sgbm,kit] python tests/benchmarks/bench_predict.py` (or
`tests/benchmarks/run.py predict`). The header gives the date, the load average and the thread count.
"""
import contextlib, io, os, shutil, sys, tempfile, time
from pathlib import Path

import torch

THREADS = int(os.environ.get('BENCH_THREADS', 1))     # the machine the kit is built on is shared
PAIRS = int(os.environ.get('BENCH_PAIRS', 2))
ONLY = [s for s in os.environ.get('BENCH_ONLY', '').split(',') if s]
REPO = Path(__file__).resolve().parents[2]
MOTO = REPO / 'data_samples' / 'middlebury2014' / 'Motorcycle-perfect'


def kit_run(folder: Path) -> Path:
    "A run directory with the Models page's CPU model architecture, as a training run leaves it (weights and metadata)."
    from stereomae.config import config_dict
    from stereomae.disparity import DisparityModel
    from stereomae.train import save_weights
    torch.manual_seed(0)
    m = DisparityModel(backbone='cnn', hidden_dims=(64, 64, 64), shared_backbone=True, n_downsample=3, n_gru_layers=2,
                       slow_fast_gru=True)
    run = folder / 'runs' / 'finetune' / 'cpu-model'; run.mkdir(parents=True)
    save_weights(run / 'weights.safetensors', m, dict(kind='disparity', step=800, model_class='DisparityModel',
                                                       model_config=config_dict(m.cfg)))
    (run / 'config.yaml').write_text('valid_iters: 32\nsteps: 800\n')
    return run


def raft_checkpoint(folder: Path, name: str, **options) -> Path:
    "A RAFT-Stereo checkpoint in the published layout (DataParallel's `module.` prefix), random weights."
    from stereomae.disparity import DisparityModel
    torch.manual_seed(0)
    sd = DisparityModel(backbone='cnn', **options).raft_stereo_state_dict()
    torch.save({f'module.{k}': v for k, v in sd.items()}, folder / name)
    return folder / name


def pairs_folder(folder: Path, n: int) -> Path:
    "n copies of the Motorcycle pair, one scene folder each (the Middlebury layout, with calib.txt)."
    for i in range(n): shutil.copytree(MOTO, folder / 'pairs' / f'Motorcycle-{i}')
    return folder / 'pairs'


def measure(source: str, pairs: Path, out: Path, formats=('png', 'npy', 'pfm'), **predict_kw) -> dict:
    from stereomae.builders import resolve_model
    from stereomae.infer import find_pairs, predict_pairs
    t0 = time.perf_counter(); src = resolve_model(source); t_resolve = time.perf_counter() - t0
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):             # the summary lines (their cost is counted)
        res = predict_pairs(src.model, find_pairs(f'{pairs}/*/im0.png', f'{pairs}/*/im1.png'), out, formats, progress=False,
                            iters=src.iters or 32, **predict_kw)
    wall = time.perf_counter() - t0
    assert all(r.error is None for r in res), [r.error for r in res]
    model = sum(r.seconds for r in res)
    return dict(resolve=t_resolve, wall=wall / len(res), model=model / len(res), overhead=(wall - model) / model, iters=src.iters)


def main():
    torch.set_num_threads(THREADS)
    print(f'{time.strftime("%Y-%m-%d %H:%M")}, load average {os.getloadavg()[0]:.1f}, {THREADS} thread(s), torch {torch.__version__}, '
          f'{PAIRS} copies of Motorcycle (500×741) per source, random weights for the networks\n')
    tmp = Path(tempfile.mkdtemp(prefix='bench_predict_'))
    try:
        pairs = pairs_folder(tmp, PAIRS)
        sources = {'sgbm': ('sgbm', {}), 'kit': (str(kit_run(tmp)), {}),
                   'realtime': (str(raft_checkpoint(tmp, 'raftstereo-realtime.pth', shared_backbone=True, n_downsample=3, n_gru_layers=2)), {}),
                   'raft': (str(raft_checkpoint(tmp, 'raftstereo-eth3d.pth')), {}),
                   'sgbm, every format': ('sgbm', dict(formats=('png', 'npy', 'pfm', 'kitti', 'depth', 'ply', 'confidence'),
                                                       confidence=['lr'], lr_check=True))}
        labels = {'sgbm': 'SGBM (OpenCV)', 'kit': 'kit run (CPU model layout)', 'realtime': 'raftstereo-realtime.pth',
                  'raft': 'raftstereo-eth3d.pth (sceneflow, middlebury: same layout)', 'sgbm, every format': 'SGBM, every format + LR check'}
        print('| model source | iterations | resolver (s, once) | model (s / pair) | wall (s / pair) | everything else / model |')
        print('|---|---|---|---|---|---|')
        for key, (source, kw) in sources.items():
            if ONLY and key.split(',')[0] not in ONLY: continue
            r = measure(source, pairs, tmp / 'out' / key.replace(' ', '_').replace(',', ''), **kw)
            print(f"| {labels[key]} | {r['iters'] or '-'} | {r['resolve']:.2f} | {r['model']:.2f} | {r['wall']:.2f} | {100 * r['overhead']:.1f} % |",
                  flush=True)
    finally: shutil.rmtree(tmp, ignore_errors=True)
    print('\nThe model column is the time `predict_disparity` reports (reading the right image included); "everything else" is '
          'listing the pairs, reading the left image, making the folders, writing the files and printing the summary lines.')


if __name__ == '__main__':
    sys.path.insert(0, str(REPO)); main()
