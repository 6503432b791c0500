"""Where a training step's time goes (data, forward, backward, optimizer) for stage-1 presets, and whether the data
loader keeps up: `python tests/benchmarks/run.py train`.

The step is the loop's own (`stereomae.train`): a `BatchStream` over the job's augmented dataset, the task's forward,
backward, and clipping + AdamW + scheduler. Data time is measured twice: loading in the main process (the raw cost of
a batch) and with worker processes (what the loop actually waits for); the loader keeps up when the wait is a small
fraction of the compute time.
"""
import os, sys, time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def _timed(f):
    t = time.perf_counter(); out = f(); return out, time.perf_counter() - t


def step_breakdown(params: dict, steps: int = 3, workers: int = 0) -> dict:
    "Median seconds per phase over `steps` steps (after one warm-up step) for a stage-1 job's parameters."
    from stereomae.cli import pretrain_setup
    from stereomae import train as T
    job = pretrain_setup({**params, 'num_workers': workers})
    cfg, model = job['cfg'], job['model']
    stream = T.BatchStream(job['train_data'], cfg.batch_size, cfg.seed, num_workers=workers, collate_fn=job['collate_fn'])
    opt = T.build_optimizer(model, cfg); sched = T.build_scheduler(opt, cfg); task = T.PretrainTask()
    model.train(); times = {k: [] for k in ('data', 'forward', 'backward', 'optimizer')}
    for i in range(steps + 1):
        batch, td = _timed(lambda: next(stream))
        out, tf = _timed(lambda: task(model, batch))
        _, tb = _timed(lambda: out.loss.backward())
        def opt_step():
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad); opt.step(); sched.step(); opt.zero_grad(set_to_none=True)
        _, to = _timed(opt_step)
        if i: [times[k].append(v) for k, v in zip(times, (td, tf, tb, to))]
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    med['params'] = sum(p.numel() for p in model.parameters()) / 1e6
    return med


CASES = {
    'tiny (64x128, batch 8)': dict(preset='tiny', batch_size=8, train_data=[{'dataset': 'synthetic', 'n': 64, 'size': [128, 256]}]),
    'seed (224x448, 16x32 patches, batch 2)': dict(preset='seed', batch_size=2,
                                                   train_data=[{'dataset': 'synthetic', 'n': 16, 'size': [256, 512]}]),
}


def main():
    torch.manual_seed(0)
    print(f'CPU, {torch.get_num_threads()} threads, torch {torch.__version__}\n')
    print('| preset | params (M) | data, main process (s) | forward (s) | backward (s) | optimizer (s) | step (s) | data wait, 2 workers (s) | loader keeps up |')
    print('|---|---|---|---|---|---|---|---|---|')
    for name, params in CASES.items():
        params = {**params, 'runs_dir': '/tmp/bench_train', 'steps': 100, 'progress': False}
        r0 = step_breakdown(params, steps=3, workers=0)
        r2 = step_breakdown(params, steps=3, workers=2)
        compute = r0['forward'] + r0['backward'] + r0['optimizer']
        print(f"| {name} | {r0['params']:.1f} | {r0['data']:.3f} | {r0['forward']:.3f} | {r0['backward']:.3f} | {r0['optimizer']:.3f} "
              f"| {compute + r0['data']:.3f} | {r2['data']:.3f} | {'yes' if r2['data'] < 0.1 * compute else 'no'} "
              f"({r2['data'] / compute:.0%} of compute) |", flush=True)


if __name__ == '__main__':
    main()
