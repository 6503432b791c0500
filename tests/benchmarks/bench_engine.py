"""The training engine's overhead per step against a bare hand-written loop on the same model and data.

`stereomae.train.fit` on its in-memory fast path (a dict of stacked tensors, `runs_dir=''`) against the loop the
tutorial used before the engine existed (AdamW, a LambdaLR / OneCycleLR, index-and-step), both on the tutorial's tiny
models, on one CPU thread, alternating rounds in one process so that load drifts hit both alike. The ratio is
`fit` seconds per step over bare seconds per step (goal: at most 1.05). Both run with denormal floats flushed to
zero, as `fit` does on a CPU (`flush_denormal`); a first line times the bare loop with torch's default (denormals
on the processor's slow path, which is what the hand-written loops ran with) and flushed. `--quick` checks the script in seconds.
"""
import math, statistics, sys, time

import torch

from stereomae.disparity import DisparityModel
from stereomae.losses import sequence_loss
from stereomae.mae import PRESETS, build_mae
from stereomae.synthetic import SyntheticStereo
from stereomae.train import FinetuneConfig, PretrainConfig
from stereomae.mae import fit_pretrain
from stereomae.disparity import fit_disparity

TINY_DISPARITY = dict(neck_dims=[32, 64, 128, 256], neck_width=64, feature_dim=64, stem_dim=64, hidden_dims=[48, 48, 48],
                      motion_dim=64, head_dim=64, corr_levels=2, corr_radius=3)   # the tutorial's stage-2 model


def data(n: int, size=(64, 128)) -> dict:
    ss = SyntheticStereo(n, size=size, seed=2000)
    return {k: torch.stack([s[k] for s in ss]) for k in ('left', 'right', 'disp', 'valid')}


def batches(n: int, steps: int, batch: int, seed: int) -> list:
    g, idx = torch.Generator().manual_seed(seed), []
    while len(idx) < steps * batch: idx += torch.randperm(n, generator=g).tolist()
    return [idx[i * batch:(i + 1) * batch] for i in range(steps)]


def bare_pretrain(mae, d, steps, batch, lr=1.5e-3):
    "The tutorial's stage-1 loop before the engine."
    opt = torch.optim.AdamW(mae.parameters(), lr, betas=(0.9, 0.95), weight_decay=0.05)
    w = max(1, int(0.05 * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1., (i + 1) / w) * 0.5 * (1 + math.cos(math.pi * min(1., i / steps))))
    g = torch.Generator().manual_seed(0)
    for b in batches(len(d['left']), steps, batch, 0):
        out = mae(d['left'][b], d['right'][b], generator=g)
        opt.zero_grad(); out.loss.backward(); opt.step(); sched.step(); out.loss.item()


def bare_finetune(model, d, steps, batch, lr=1e-3, iters=4):
    "The tutorial's stage-2 loop before the engine."
    opt = torch.optim.AdamW(model.parameters(), lr, weight_decay=1e-5)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps + 1, pct_start=0.1, anneal_strategy='linear', cycle_momentum=False)
    for b in batches(len(d['left']), steps, batch, 1):
        loss, m = sequence_loss(model(d['left'][b], d['right'][b], iters=iters).preds, d['disp'][b], d['valid'][b])
        opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step(); sched.step()


def engine_pretrain(mae, d, steps, batch, lr=1.5e-3):
    cfg = PretrainConfig(runs_dir='', steps=steps, batch_size=batch, lr=lr, progress=False, device='cpu', precision='fp32',
                         clip_grad=0, log_every=steps)
    fit_pretrain(cfg, mae, {k: d[k] for k in ('left', 'right')})


def engine_finetune(model, d, steps, batch, lr=1e-3, iters=4):
    cfg = FinetuneConfig(runs_dir='', steps=steps, batch_size=batch, lr=lr, warmup=0.1, train_iters=iters, progress=False,
                         device='cpu', precision='fp32', log_every=steps)
    fit_disparity(cfg, model, d)


def models():
    torch.manual_seed(0)
    mae = build_mae(PRESETS['tiny'])
    torch.manual_seed(0)
    disp = DisparityModel.from_encoder(build_mae(PRESETS['tiny']).encoder, **TINY_DISPARITY).freeze_bn().train()
    return mae, disp


def timed(f, *args) -> float:
    t = time.process_time(); f(*args); return time.process_time() - t


def compare(steps: int, rounds: int, n: int = 64) -> list[dict]:
    torch.set_num_threads(1)
    d = data(n)
    rows = []
    torch.set_flush_denormal(True)                 # what fit does on a CPU: both loops alike
    for name, bare, engine, batch in (('stage 1 (tiny MAE, batch 8)', bare_pretrain, engine_pretrain, 8),
                                      ('stage 2 (tutorial model, batch 2, 4 iterations)', bare_finetune, engine_finetune, 2)):
        tb, te = [], []
        for r in range(rounds):
            mae, disp = models(); model = mae if 'stage 1' in name else disp
            tb.append(timed(bare, model, d, steps, batch) / steps)
            mae, disp = models(); model = mae if 'stage 1' in name else disp
            te.append(timed(engine, model, d, steps, batch) / steps)
        rows.append(dict(name=name, bare=statistics.median(tb), engine=statistics.median(te)))
    torch.set_flush_denormal(False)
    return rows


def denormal_effect(steps: int, rounds: int, n: int = 64) -> tuple[float, float]:
    "Seconds per step of the hand-written stage-2 loop with denormal floats on the slow path (torch's default) and flushed."
    torch.set_num_threads(1)
    d, slow, fast = data(n), [], []
    for _ in range(rounds):
        for flush, out in ((False, slow), (True, fast)):
            torch.set_flush_denormal(flush)
            out.append(timed(bare_finetune, models()[1], d, steps, 2) / steps)
    torch.set_flush_denormal(False)
    return statistics.median(slow), statistics.median(fast)


def main(quick: bool = False):
    steps, rounds = (3, 1) if quick else (60, 5)
    slow, fast = denormal_effect(3 if quick else 30, 1 if quick else 3, n=16 if quick else 64)
    print(f'Denormal floats, hand-written stage-2 loop: {slow * 1e3:.1f} ms per step on the slow path (torch\'s default), '
          f'{fast * 1e3:.1f} ms flushed to zero ({slow / fast:.2f}x); `fit` flushes them on a CPU.\n')
    rows = compare(steps, rounds, n=16 if quick else 64)
    print(f'CPU seconds of one thread per step, median of {rounds} alternating rounds of {steps} steps each')
    print('\n| loop | hand-written | `fit` (in memory) | ratio |\n|---|---:|---:|---:|')
    for r in rows: print(f"| {r['name']} | {r['bare'] * 1e3:.1f} ms | {r['engine'] * 1e3:.1f} ms | {r['engine'] / r['bare']:.3f} |")
    return rows


if __name__ == '__main__':
    main(quick='--quick' in sys.argv)
