"""CPU inference of an exported graph: onnxruntime against PyTorch on the same weights, batch 1.

Configurations: RAFT-Stereo's default CNN (32 iterations) and its real-time configuration (shared backbone, 1/8,
two GRU levels, slow-fast; 7 iterations), both with random weights (the time does not depend on them); sizes: the
bundled Motorcycle pair (500×741, padded to 512×768 by both) and 384×768.

How it measures:
* time is the CPU time of a one-thread process (`time.process_time`; torch and onnxruntime both limited to one
  thread): on a machine shared with other jobs the wall time mostly measures the queue for the cores, while the CPU
  time of one thread is what the pair costs on a core of its own. The wall time is printed beside it.
* PyTorch runs the eager model (`DisparityModel.forward`, with its in-place inference path); onnxruntime runs the
  graph `stereomae.export.export_onnx` wrote (opset 18, its default graph optimisations), through
  `ExportedDisparity` (the same padding). The two alternate in one process, `rounds` times per size, and the table
  shows the fastest round of each and their ratio, measured side by side.
* the export time (CPU seconds of one thread) and the largest disparity difference between the two are printed too.

`python tests/benchmarks/bench_export.py [--quick]` (`--quick`: a tiny model, 2 iterations, small sizes: a check of the script)
"""
import os, sys, tempfile, time
from pathlib import Path

import torch

clock = time.process_time


def models(quick: bool):
    from stereomae.disparity import DisparityModel, RAFT_STEREO_REALTIME
    if quick:
        tiny = dict(hidden_dims=(32,), feature_dim=32, motion_dim=16, head_dim=32)
        return [('tiny real-time (CNN)', dict(RAFT_STEREO_REALTIME, **tiny), 2)]
    return [("RAFT-Stereo's default (CNN)", {}, 32), ('real-time (CNN)', RAFT_STEREO_REALTIME, 7)]


def pairs(quick: bool):
    from stereomae.data import sample_dataset
    s = sample_dataset('motorcycle')[0]
    moto = (s['left'][None], s['right'][None])
    g = torch.Generator().manual_seed(0)
    size = (96, 160) if quick else (384, 768)
    left = torch.rand(1, 3, *size, generator=g)
    out = [(f'Motorcycle {tuple(moto[0].shape[-2:])}', moto), (f'{size[0]}×{size[1]}', (left, left.roll(-4, -1)))]
    if quick: out[0] = ('Motorcycle 1/4 (125, 185)', tuple(torch.nn.functional.interpolate(x, (125, 185), mode='area') for x in moto))
    return out


def timed(f):
    t0, w0 = clock(), time.perf_counter()
    out = f()
    return out, clock() - t0, time.perf_counter() - w0


def measure(quick: bool = False, rounds: int = 2) -> list[dict]:
    from stereomae.disparity import DisparityModel
    from stereomae.export import export_onnx, ExportedDisparity
    torch.set_num_threads(1)
    rows, tmp = [], Path(tempfile.mkdtemp())
    for name, opts, iters in models(quick):
        torch.manual_seed(0)
        model = DisparityModel(**opts).eval()
        path, export_secs, export_wall = timed(lambda: export_onnx(model, tmp / f'{len(rows)}.onnx', iters=iters))
        graph = ExportedDisparity(path, threads=1)
        for size, (left, right) in pairs(quick):
            best = {'torch': (float('inf'), 0.), 'onnxruntime': (float('inf'), 0.)}
            with torch.no_grad():
                for _ in range(rounds):                                   # alternating: both see the same machine
                    a, secs, wall = timed(lambda: model(left, right, iters=iters).disp)
                    best['torch'] = min(best['torch'], (secs, wall))
                    b, secs, wall = timed(lambda: graph(left, right, iters=iters).disp)
                    best['onnxruntime'] = min(best['onnxruntime'], (secs, wall))
            rows.append(dict(config=name, iters=iters, size=size, torch=best['torch'], ort=best['onnxruntime'],
                             diff=(a - b).abs().max().item(), export=(export_secs, export_wall)))
    return rows


def main(quick: bool = False):
    import onnxruntime
    load = os.getloadavg()[0]
    rows = measure(quick, rounds=1 if quick else 2)
    print(f'torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {os.cpu_count()} cores, load average '
          f'{load:.1f} at the start and {os.getloadavg()[0]:.1f} at the end (1 min); CPU seconds of one thread per pair '
          f'(fastest of {1 if quick else 2} alternating rounds; wall seconds in brackets)\n')
    print('| configuration | iterations | pair | PyTorch (eager) | onnxruntime | PyTorch / onnxruntime | largest difference |')
    print('|---|---:|---|---:|---:|---:|---:|')
    for r in rows:
        print(f"| {r['config']} | {r['iters']} | {r['size']} | {r['torch'][0]:.2f} s ({r['torch'][1]:.2f}) | "
              f"{r['ort'][0]:.2f} s ({r['ort'][1]:.2f}) | {r['torch'][0] / r['ort'][0]:.2f} | {r['diff']:.1e} px |")
    seen = {}
    for r in rows: seen.setdefault(r['config'], r['export'])
    print('\nExport (torch.export, then ONNX opset 18): ' +
          '; '.join(f'{k} {v[0]:.0f} CPU s ({v[1]:.0f} s wall)' for k, v in seen.items()))
    return rows


if __name__ == '__main__':
    main(quick='--quick' in sys.argv)
