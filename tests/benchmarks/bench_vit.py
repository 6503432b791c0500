"""ViT encoder: what encoding only the visible tokens buys, per training step (forward + backward + AdamW) on the CPU.

The paper's geometry: 2 views of 224×448 in 16×32 patches (196 tokens each), batch 2 pairs, ratio 0.75. Rows are
measured side by side in one run, next to this machine's fp32 matmul rate (the ceiling for GFLOP/s).
"""
import sys, time
from pathlib import Path
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_matmul import matmul_gflops
from stereomae.masking import make_mask
from stereomae.vit import ViTEncoder, ENCODER_PRESETS


def step_fn(enc, opt, left, right, mask):
    def step():
        out = enc(left, right, mask)
        loss = sum(t.float().pow(2).mean() for t in out.tokens)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    return step


def measure(step, repeats):
    with FlopCounterMode(display=False) as fc: step()
    best = float('inf')
    for _ in range(repeats):
        t0 = time.perf_counter(); step(); best = min(best, time.perf_counter() - t0)
    return best, fc.get_total_flops() / 1e9


def main(presets=('tiny', 'base'), B=2, repeats=2):
    peak = matmul_gflops(1024)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads; fp32 matmul {peak:.1f} GFLOP/s\n')
    print('| preset | mode | mask | tokens / view | s / step | pairs / s | GFLOP / step | GFLOP/s | % of matmul | vs unmasked |')
    print('|---|---|---|---|---|---|---|---|---|---|')
    g = torch.Generator().manual_seed(0)
    left, right = torch.rand(B, 3, 224, 448, generator=g), torch.rand(B, 3, 224, 448, generator=g)
    for name in presets:
        for mode in ('siamese', 'joint'):
            enc = ViTEncoder((224, 448), (16, 32), mode=mode, **ENCODER_PRESETS[name])
            opt = torch.optim.AdamW(enc.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05)
            base = None
            for mname, ratio in (('none', None), ('tube 0.75', 0.75)):
                mask = None if ratio is None else make_mask('tube', B, 196, ratio, g)
                t, gf = measure(step_fn(enc, opt, left, right, mask), repeats)
                base = base or t
                K = 196 if mask is None else int((~mask[0, 0]).sum())
                print(f'| {name} | {mode} | {mname} | {K} | {t:.3f} | {B / t:.2f} | {gf:.1f} | {gf / t:.1f} | '
                      f'{100 * gf / t / peak:.0f} % | {base / t:.2f}× |', flush=True)


if __name__ == '__main__':
    main()
