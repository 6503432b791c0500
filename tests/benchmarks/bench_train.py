"""Where a training step's time goes (data, forward, backward, optimizer) for pre-training and disparity fine-tuning
with the tiny and the paper's presets on the CPU, and whether the data loader keeps up: `[BENCH_THREADS=n] python tests/benchmarks/run.py train`.

The step is the engine's own: `stereomae.train.train_step` runs unchanged on the training state of a job built by
`stereomae.builders.pretrain_setup` / `finetune_setup` from the experiment's YAML file; the phases are timed by wrapping
what the step calls (the batch stream, the task's forward, `_micro_step` for forward + backward); the optimizer phase is
the rest of the step (unscale, clipping, AdamW, scheduler). Data is measured twice: the raw cost of a batch loaded in the main process, and the time the step
waits for a batch with worker processes (the experiment's `num_workers`, at most this machine's cores) — the loader
keeps up when that wait is a small fraction of the compute.
"""
import os, statistics, sys, time
from pathlib import Path
from unittest import mock

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
CONFIGS = REPO / 'nbs' / 'experiments' / 'configs'
THREADS = int(os.environ.get('BENCH_THREADS', 0))   # 0: torch's default; BENCH_THREADS=1 on a crowded machine


class PhaseTimer:
    "Seconds per phase of each `train_step` call, taken by wrapping the functions the step calls."
    def __init__(self): self.now = {}

    def add(self, phase, seconds): self.now[phase] = self.now.get(phase, 0.0) + seconds

    def wrap(self, phase, f):
        def timed(*args, **kwargs):
            t = time.perf_counter()
            try: return f(*args, **kwargs)
            finally: self.add(phase, time.perf_counter() - t)
        return timed


class TimedStream:
    "A `BatchStream` whose `next` is timed as the data phase."
    def __init__(self, stream, timer): self.stream, self.timer = stream, timer
    def __next__(self): return self.timer.wrap('data', next)(self.stream)
    def __iter__(self): return self


def _job(kind: str, params: dict, workers: int):
    "The job's training state, prepared by the engine as `fit` prepares it (nothing is written: runs_dir='')."
    from stereomae import builders, train as T
    setup = builders.pretrain_setup if kind == 'pretrain' else builders.finetune_setup
    job = setup({**params, 'num_workers': workers, 'runs_dir': '', 'device': 'cpu', 'precision': 'fp32'})
    state, _ = T._prepare(job.model, job.task, job.train_data, job.cfg, job.configs, job.collate_fn)
    return job, state


def data_cost(kind: str, params: dict, batches: int = 3) -> float:
    "Median seconds to load one batch in the main process (no workers, no compute): the raw cost of the data."
    _, state = _job(kind, params, 0)
    next(state.data); times = []   # the first batch also starts the sampler
    for _ in range(batches):
        t = time.perf_counter(); next(state.data); times.append(time.perf_counter() - t)
    return statistics.median(times)


def step_breakdown(kind: str, params: dict, steps: int = 3, workers: int = 0) -> dict:
    "Median seconds per phase over `steps` calls of the engine's `train_step` (after one warm-up step)."
    from stereomae import train as T
    job, state = _job(kind, params, workers)
    timer = PhaseTimer()
    state.task = timer.wrap('forward', state.task)
    state.data = TimedStream(state.data, timer)
    rows = []
    with mock.patch.object(T, '_micro_step', timer.wrap('forward+backward', T._micro_step)), torch.enable_grad():
        for i in range(steps + 1):
            timer.now = {}
            t = time.perf_counter(); T.train_step(state); total = time.perf_counter() - t
            if i: rows.append(dict(timer.now, total=total))
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    med['backward'] = med.pop('forward+backward') - med['forward']
    med['optimizer'] = med['total'] - med['data'] - med['forward'] - med['backward']
    med['params'] = sum(p.numel() for p in job.model.parameters()) / 1e6
    med['batch'] = job.cfg.batch_size
    return med


def _params(yaml: str, **override) -> dict:
    from stereomae.config import load_params
    return {**load_params(CONFIGS / yaml), 'runs_dir': '/tmp/bench_train', 'progress': False, 'steps': 1000, **override}


SYNTH_PAPER = [{'dataset': 'synthetic', 'n': 16, 'size': [256, 512], 'max_disp': 64}]
CASES = {   # name: (job kind, parameters = the experiment's YAML with CPU-sized batches and procedural data, timed steps)
    'pre-training, tiny': ('pretrain', _params('pretrain_mse_tiny.yaml'), 5),
    'pre-training, paper': ('pretrain', _params('pretrain_mse.yaml', batch_size=2, train_data=SYNTH_PAPER, valid_data=[]), 3),
    'fine-tuning, tiny': ('finetune', _params('finetune_sceneflow_scratch_tiny.yaml'), 5),
    'fine-tuning, paper': ('finetune', _params('finetune_sceneflow_scratch.yaml', batch_size=2, train_data=SYNTH_PAPER, valid_data=[]), 2),
}


def main(cases=CASES):
    if THREADS: torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    cores = os.cpu_count()
    print(f'CPU, {torch.get_num_threads()} threads, {cores} cores, torch {torch.__version__}, fp32, '
          f'load average {os.getloadavg()[0]:.2f} at start. Median over the timed steps, after one warm-up step.\n')
    print('| job, preset | batch | timed steps | params (M) | data, main process (s) | data wait, workers (s) | forward (s) | backward (s) '
          '| optimizer (s) | step (s) | loader keeps up (wait < 10 % of compute) |')
    print('|---|---|---|---|---|---|---|---|---|---|---|')
    for name, (kind, params, steps) in cases.items():
        workers = min(int(params.get('num_workers', 2)), cores)    # the experiment's workers, at most the cores
        raw = data_cost(kind, params)
        r = step_breakdown(kind, params, steps=steps, workers=workers)
        waits = [(workers, r['data'])]
        if workers != cores: waits.append((cores, step_breakdown(kind, params, steps=steps, workers=cores)['data']))
        compute = r['forward'] + r['backward'] + r['optimizer']
        wait = ', '.join(f"{d:.3f} ({w} worker{'s' * (w != 1)})" for w, d in waits)
        verdict = '; '.join(f"{'yes' if d < 0.1 * compute else 'no'} with {w}: {d / compute:.0%}" for w, d in waits)
        print(f"| {name} | {r['batch']} | {steps} | {r['params']:.1f} | {raw:.3f} | {wait} | {r['forward']:.3f} | {r['backward']:.3f} "
              f"| {r['optimizer']:.3f} | {r['total']:.3f} | {verdict} of compute |", flush=True)
    print(f'\nLoad average at the end: {os.getloadavg()[0]:.2f}.')


if __name__ == '__main__':
    main()
