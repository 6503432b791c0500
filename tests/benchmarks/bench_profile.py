"""Where a training step's CPU time goes, per stage: attention, MLP, decoder, loss (forward), backward, optimizer, the
wait for data, and the host reads of the step. Usage: `OMP_NUM_THREADS=1 python tests/benchmarks/bench_profile.py
[--quick]`; with `PYTHONPATH=<an older checkout>` the same script profiles that code (before/after tables).

Forward parts are timed by hooks on the modules (exact on a CPU, where every operation finishes before the next
starts; on a GPU they would time the launches only); backward is the micro-step minus its forward, the optimizer the
step minus its micro-steps and its data. Host reads are counted with `stereomae.train.HostSyncs` where the code has it.
"""
import argparse, collections, os, statistics, sys, time
from pathlib import Path

import torch

from stereomae import builders, train as T

STAGES = {
    'stage 1, paper preset (ViT-B, 224×448, 16×32 patches), 2 pairs': ('pretrain', dict(preset='paper', batch_size=2,
        train_data=[dict(dataset='synthetic', n=16, size=[256, 512])])),
    'stage 2, tiny ViT + DPT + RAFT decoder, 2 pairs 64×128, 3 iterations': ('finetune', dict(preset='tiny', batch_size=2, crop=[64, 128],
        train_iters=3, hidden_dims=[32, 32, 32], neck_dims=[24, 48, 96, 192], neck_width=64, feature_dim=64,
        train_data=[dict(dataset='synthetic', n=16, size=[96, 160], max_disp=24)])),
}
QUICK = {'stage 1, tiny preset, 2 pairs': ('pretrain', dict(preset='tiny', batch_size=2, train_data=[dict(dataset='synthetic', n=8, size=[64, 128])]))}


class Clock:
    def __init__(self): self.t = collections.defaultdict(float); self.start = {}
    def hook(self, model, name, pattern):
        "Time every module whose qualified name ends with `pattern` (its forward, outermost calls only)."
        for n, m in model.named_modules():
            if n.endswith(pattern) or n == pattern:
                m.register_forward_pre_hook(lambda mod, a, n=n: self.start.__setitem__(n, time.perf_counter()))
                m.register_forward_hook(lambda mod, a, o, n=n: self.t.__setitem__(name, self.t[name] + time.perf_counter() - self.start.pop(n)))
    def wrap(self, name, f):
        def timed(*a, **k):
            t0 = time.perf_counter()
            try: return f(*a, **k)
            finally: self.t[name] += time.perf_counter() - t0
        return timed


def profile(kind, params, steps):
    setup = builders.pretrain_setup if kind == 'pretrain' else builders.finetune_setup
    job = setup({**params, 'runs_dir': '', 'device': 'cpu', 'precision': 'fp32', 'progress': False, 'log_every': 10**6, 'num_workers': 0})
    torch.manual_seed(0)
    state, _ = T._prepare(job.model, job.task, job.train_data, job.cfg, job.configs, job.collate_fn)
    clock = Clock(); m = state.model
    if kind == 'pretrain':
        for i in range(len(m.encoder.blocks)): clock.hook(m, 'encoder attention', f'encoder.blocks.{i}.attn'); clock.hook(m, 'encoder MLP', f'encoder.blocks.{i}.mlp')
        clock.hook(m, 'decoder (all of it)', 'decoder'); clock.hook(m, 'loss', 'loss')
    else:
        clock.hook(m, 'backbone (ViT, neck)', 'backbone'); clock.hook(m, 'GRU update block', 'update_block')
        import stereomae.disparity as D
        D.sequence_loss = clock.wrap('loss', D.sequence_loss)
    T._micro_step = clock.wrap('micro-step', T._micro_step)
    stream = state.data; stream_next = type(stream).__next__
    type(stream).__next__ = clock.wrap('data wait', stream_next)
    T.train_step(state)                                          # warm-up (AdamW's state, first allocations)
    reads = None
    if hasattr(T, 'HostSyncs'):
        with T.HostSyncs(T.host_resident(state.optimizer)) as s: T.train_step(state)
        reads = len(s.calls)
    clock.t.clear(); totals = []
    for _ in range(steps):
        t0 = time.perf_counter(); T.train_step(state); totals.append(time.perf_counter() - t0)
        state.pending.clear()
    type(stream).__next__ = stream_next
    n, t = steps, clock.t
    fwd = sum(v for k, v in t.items() if k not in ('micro-step', 'data wait', 'encoder attention', 'encoder MLP'))
    if kind == 'pretrain': fwd += t['encoder attention'] + t['encoder MLP']
    parts = {k: v / n for k, v in t.items() if k not in ('micro-step',)}
    parts['backward (micro-step minus forward parts)'] = (t['micro-step'] - fwd) / n
    parts['optimizer, clipping, bookkeeping (the rest)'] = sum(totals) / n - t['micro-step'] / n - t['data wait'] / n
    return statistics.median(totals), parts, reads


def main(quick=False):
    import stereomae
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU fp32, code {Path(stereomae.__file__).parent}; "
          f"load average {os.getloadavg()[0]:.2f}\n")
    for label, (kind, params) in (QUICK if quick else STAGES).items():
        total, parts, reads = profile(kind, params, 1 if quick else 3)
        print(f"**{label}**: {total:.3f} s per step (median); host reads per step: {'not countable in this code' if reads is None else reads}\n")
        print('| part | s / step | share |\n|---|---|---|')
        for k, v in sorted(parts.items(), key=lambda kv: -kv[1]): print(f'| {k} | {v:.4f} | {100 * v / total:.0f} % |')
        print()


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true')
    main(ap.parse_args().quick)
