"""Inference time and peak memory of `DisparityModel` (fp32, batch 1, 32 GRU iterations): CNN and ViT variants,
`reg` and `alt` correlation, at 256×512, 384×768 and (with `--middlebury`) full Middlebury-F size.

How it measures (everything is a real measurement; only the 32-iteration total is assembled from measured parts):
* time is the CPU time of a one-thread process (`time.process_time`): on a machine shared with other jobs the wall
  time mostly measures the queue for the cores, while the CPU time of one thread is what the pair costs on a core of
  its own (it equals the wall time on an idle machine). The wall time of each row is printed beside it. With
  `BENCH_THREADS=n > 1` the CPU time adds up the threads, so compare wall times then.
* every job runs in a fresh Python process, so its peak resident memory is its own. The encoder half (`features`)
  runs in one process per backbone and size and saves its outputs; each decoder configuration (`reg`, `alt`, the
  RAFT-Stereo work pattern) runs in its own process on those saved features. The encoder code is the same for all
  decoder configurations, so the time and memory of that half are measured once and counted in every row.
* peak memory is the kernel's high-water mark of resident memory (`VmHWM`, reset through `/proc/self/clear_refs`
  before each half) minus the resident size once the model and the inputs exist: the real extra memory of inference,
  torch's allocations included (tracemalloc would not see them). The row's peak is the larger of the two halves.
* time: the encoder half is timed once. The decoder half runs `probe` iterations (4 by default) with a timestamp at
  every update-block call, so its set-up (context biases, correlation volume or feature tables, first lookup), the
  per-iteration time (mean of the probe-1 measured intervals) and the final upsampling are all measured; the 32-iteration
  time is encoder + decoder(probe) + (32 − probe) × per-iteration. `--direct` also times one full 32-iteration
  `model(left, right)` call at 256×512 to check that sum.
* the CNN comparison with RAFT-Stereo's work pattern runs our model at equal settings in one process, alternating
  rounds: as it runs (upsampling-mask head only at the last iteration, pyramid of `corr_levels` levels) and with
  RAFT-Stereo's extra work added: the mask head at every iteration (`mask_every_iter`) and one more pooled pyramid
  level built but never read; the memory of each pattern comes from its own process.
  (RAFT-Stereo's 2-channel flow and its grid-sample lookup are not emulated: about 0.4 % and 1.5 % of its iteration.)
* next to the measured decoder peaks, `decoder_memory` counts the bytes the GRU loop must keep alive with `reg` and
  with `alt` (read off the code, tested against the tensors a run really holds): the bound on the reg / alt ratio.
* FLOPs are counted on the meta device (`torch.utils.flop_counter`, convolutions and matrix products) and turned into
  GFLOP/s next to this machine's matmul rate measured in the same run (`bench_matmul.py`).

`[BENCH_THREADS=n] python tests/benchmarks/bench_disparity.py [--quick] [--direct] [--middlebury | --middlebury-only]`
"""
import json, os, subprocess, sys, tempfile, time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_matmul import matmul_gflops, rss_bytes  # noqa: E402
THREADS = int(os.environ.get('BENCH_THREADS', 1))  # one thread: its CPU time is the pair's cost (see above)
clock = time.process_time
ITERS, PROBE = 32, 4
MIDDLEBURY_F = (1988, 2880)  # a Middlebury-F (MiddEval3 full) pair: about 2000×2900; padded to 2016×2880 inside
REFERENCE = dict(size=(384, 768), secs=34.0, extra_gb=1.0)  # RAFT-Stereo's published code, fp32, 2 threads (issue 5)


# ---------------------------------------------------------------- memory of this process
def _reset_peak():
    "Reset the kernel's resident high-water mark of this process to the current resident size."
    import ctypes
    ctypes.CDLL('libc.so.6').malloc_trim(0)  # hand freed heap pages back first
    with open('/proc/self/clear_refs', 'w') as f: f.write('5')

def _peak() -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'): return int(line.split()[1]) * 1024
    raise RuntimeError('no VmHWM in /proc/self/status')


# ---------------------------------------------------------------- models
def vit_encoder(H, W, preset='base'):
    from stereomae.vit import ViTEncoder
    if preset == 'base': return ViTEncoder(img_size=(H, W))  # ViT-B/16, 12×768
    return ViTEncoder(img_size=(224, 448), patch_size=16, embed_dim=64, depth=2, num_heads=4)  # functional check only

def build(backbone, impl, H, W, device='cpu', preset='base'):
    import torch
    from stereomae.disparity import DisparityModel
    torch.manual_seed(0)
    with torch.device(device):
        if backbone == 'cnn': return DisparityModel(corr_implementation=impl).eval()
        tiny = {} if preset == 'base' else dict(neck_dims=(16, 16, 32, 32), neck_width=32, feature_dim=32, hidden_dims=(32,))
        return DisparityModel.from_encoder(vit_encoder(H, W, preset), corr_implementation=impl, **tiny).eval()

def raft_stereo_work(model, on=True):
    "Add (or remove) RAFT-Stereo's extra inference work to `model` (in this process only): see the module docstring."
    import stereomae.disparity as sd
    from stereomae.corr import CorrPyramid1D
    class PyramidWithUnusedLevel(CorrPyramid1D):
        "Builds levels + 1 pooled levels, as RAFT-Stereo's `CorrBlock1D` does, and looks up only `levels`."
        def __init__(self, fl, fr, levels=4, radius=4, impl='reg', **kw):
            super().__init__(fl, fr, levels + 1, radius, impl, **kw)
            if impl == 'reg': self.unused, self.pyramid = self.pyramid[-1], self.pyramid[:-1]
            self.levels, self.widths = levels, self.widths[:-1]
    sd.CorrPyramid1D = PyramidWithUnusedLevel if on else CorrPyramid1D
    model.mask_every_iter = on
    return model


# ---------------------------------------------------------------- jobs (each in its own process)
def job_features(backbone, H, W, out, preset='base'):
    "Encoder half: time, peak memory; the features are saved to `out` for the decoder jobs."
    import torch
    from stereomae.core import pad_to_multiple
    torch.set_num_threads(THREADS)
    model = build(backbone, 'reg', H, W, preset=preset)
    g = torch.Generator().manual_seed(0)
    left, right = torch.rand(1, 3, H, W, generator=g), torch.rand(1, 3, H, W, generator=g)
    base = rss_bytes(); _reset_peak()
    with torch.no_grad():
        t0, w0 = clock(), time.perf_counter()
        (l, size), (r, _) = pad_to_multiple(left, model.pad_multiple), pad_to_multiple(right, model.pad_multiple)
        f = model.backbone(l, r)
        fl, fr, ctx = f.left, f.right, f.context
        secs, wall = clock() - t0, time.perf_counter() - w0
    peak = _peak() - base
    torch.save(dict(fl=fl, fr=fr, ctx=ctx, padded=tuple(l.shape[-2:]), size=size), out)
    return dict(secs=secs, wall=wall, peak=peak, padded=tuple(l.shape[-2:]), feat=tuple(fl.shape))

def job_decode(backbone, impl, H, W, features, iters=PROBE, raft_work=False, preset='base'):
    "Decoder half on saved features: set-up, per-iteration time from update-block timestamps, peak memory."
    import torch
    torch.set_num_threads(THREADS)
    model = build(backbone, impl, H, W, preset=preset)
    if raft_work: raft_stereo_work(model)
    base = rss_bytes(); _reset_peak()
    f = torch.load(features, weights_only=True)
    with torch.no_grad(): r = _timed_decode(model, f, iters)
    return dict(r, peak=_peak() - base)

def _timed_decode(model, f, iters):
    "CPU seconds of `model._decode` on saved features, and of each iteration (between update-block calls)."
    import torch
    from stereomae.disparity import BackboneOutput
    stamps = []
    hook = model.update_block.register_forward_pre_hook(lambda *a: stamps.append(clock()))
    t0, w0 = clock(), time.perf_counter()
    preds, low = model._decode(BackboneOutput(f['fl'], f['fr'], f['ctx']), iters, False)
    secs, wall = clock() - t0, time.perf_counter() - w0
    hook.remove()
    assert len(preds) == 1 and preds[0].shape[-2:] == f['padded'] and len(stamps) == iters, (len(stamps), iters)
    steps = [b - a for a, b in zip(stamps, stamps[1:])]
    return dict(secs=secs, wall=wall, per_iter=sum(steps) / len(steps), steps=steps,
                finite=bool(torch.isfinite(preds[0]).all()))

def job_compare(H, W, features, rounds=3, iters=PROBE):
    "Our CNN decoder against the same decoder doing RAFT-Stereo's extra work, alternating in one process."
    import torch
    torch.set_num_threads(THREADS)
    model = build('cnn', 'reg', H, W)
    f = torch.load(features, weights_only=True)
    out = dict(ours=[], raft=[])
    with torch.no_grad():
        for _ in range(rounds):
            for k in ('raft', 'ours'): out[k].append(_timed_decode(raft_stereo_work(model, k == 'raft'), f, iters))
    return out

def job_direct(backbone, impl, H, W, iters=ITERS):
    "One whole `model(left, right, iters)` call: the check of the assembled total."
    import torch
    torch.set_num_threads(THREADS)
    model = build(backbone, impl, H, W)
    g = torch.Generator().manual_seed(0)
    left, right = torch.rand(1, 3, H, W, generator=g), torch.rand(1, 3, H, W, generator=g)
    base = rss_bytes(); _reset_peak()
    with torch.no_grad():
        t0, w0 = clock(), time.perf_counter(); out = model(left, right, iters=iters)
        secs, wall = clock() - t0, time.perf_counter() - w0
    return dict(secs=secs, wall=wall, peak=_peak() - base, shape=tuple(out.disp.shape))

def job_flops(backbone, H, W, raft_work=False):
    "FLOPs of the encoder half and of one decoder iteration, counted on the meta device (nothing is computed)."
    import contextlib, torch
    from torch.utils.flop_counter import FlopCounterMode
    from stereomae.core import pad_to_multiple
    torch.autocast = lambda *a, **k: contextlib.nullcontext()  # (fp32 anyway; autocast does not know the meta device)
    model = build(backbone, 'reg', H, W, device='meta')
    if raft_work: raft_stereo_work(model)
    l = torch.empty(1, 3, H, W, device='meta')
    l, _ = pad_to_multiple(l, model.pad_multiple)
    def count(f):
        with FlopCounterMode(display=False) as c: f()
        return c.get_total_flops()
    with torch.no_grad():
        feats = model.backbone(l, l)
        enc = count(lambda: model.backbone(l, l))
        d1, d3 = (count(lambda: model._decode(feats, n, False)) for n in (1, 3))
    return dict(encoder=enc, per_iter=(d3 - d1) / 2, decoder_fixed=d1 - (d3 - d1) / 2)

def job_matmul(n=1024, repeats=10):
    "This process's fp32 matmul rate in GFLOP per CPU second (and per wall second), best of `repeats`."
    import torch
    torch.set_num_threads(THREADS)
    return dict(cpu=matmul_gflops(n, repeats, clock=clock), wall=matmul_gflops(n, repeats))

JOBS = dict(features=job_features, decode=job_decode, direct=job_direct, flops=job_flops, compare=job_compare,
            matmul=job_matmul)


def run(kind, **kw):
    "A job in a fresh Python process; its JSON result."
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{HERE}", OMP_NUM_THREADS=str(THREADS))
    code = f"import json, bench_disparity as b; print('RESULT', json.dumps(b.JOBS[{kind!r}](**{kw!r})))"
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env)
    if r.returncode: raise RuntimeError(f'{kind} {kw} failed:\n{r.stderr[-3000:]}')
    return json.loads([s for s in r.stdout.splitlines() if s.startswith('RESULT ')][-1][7:])


# ---------------------------------------------------------------- tables
def _gb(b): return b / 2**30

# ---------------------------------------------------------------- what the decoder must hold
def decoder_memory(cfg,               # a DisparityModel's `cfg` (a `DisparityConfig`)
                   padded:tuple,      # (H, W) of the padded image, multiples of 32
                   feature_dim=256,   # matching-feature channels D
                   batch=1):
    """Bytes of the fp32 tensors that must be live during `DisparityModel._decode`'s GRU loop, per part, for `reg`
    and `alt`; what the code keeps beyond that; and the bounds they put on the reg / alt ratio of peak memory.

    Every term is read off the code: `_decode` keeps the hidden states `net` (tanh of the context encoder's hidden
    maps, `hidden_dims[2 - k]` channels at level k, finest first) and the biases `inp` (`context_zqr_convs` output,
    3·hidden channels; its three chunks are views of one tensor); each iteration makes `disp` (1 channel) and the taps
    `corr_fn(disp)` (levels·(2R+1) channels) at 1/2^n. `CorrPyramid1D` with `reg` keeps `pyramid`: level l is
    (B, h, w, w // 2^l + 2(2R+2)) float32, the cost with 2R+2 zero columns per side; with `alt` it keeps `feat_l` and
    `feat_r` (B, D, h, w) and pools the right features chunk by chunk inside the lookup (no pooled copy is kept).
    GRU level k has the size of `pool2x` applied k times (ceil halving; exact for multiples of 32).
    `held` is what the code keeps alive though the loop does not need it: the caller (`_forward`, or the benchmark's
    saved features) holds the raw (hidden, context) maps, and with `reg` also the features the volume was built from."""
    H, W = padded
    n, L = cfg.n_downsample, cfg.n_gru_layers
    if H % 32 or W % 32: raise ValueError(f"padded is {tuple(padded)}: the model pads to multiples of 32")
    h, w = H // 2**n, W // 2**n
    size = lambda k: -(-h // 2**k) * -(-w // 2**k)                  # pixels of GRU level k (1/2^(n+k))
    hd = [cfg.hidden_dims[2 - k] for k in range(L)]                  # hidden channels, finest first
    levels, R = cfg.corr_levels, cfg.corr_radius
    f4 = 4 * batch                                                   # bytes per fp32 value and pixel
    common = {'GRU hidden states (net)': f4 * sum(c * size(k) for k, c in enumerate(hd)),
              'context biases z, r, q (inp)': f4 * sum(3 * c * size(k) for k, c in enumerate(hd)),
              'disparity at 1/2^n': f4 * h * w,
              'correlation taps of the iteration': f4 * levels * (2 * R + 1) * h * w}
    pyramid = f4 * h * w * sum(w // 2**l + 2 * (2 * R + 2) for l in range(levels))
    features = f4 * 2 * feature_dim * h * w
    raw_context = f4 * sum(2 * c * size(k) for k, c in enumerate(hd))
    reg = {**common, 'correlation pyramid (reg)': pyramid}
    alt = {**common, 'left and right features (alt)': features}
    held = dict(reg={'raw (hidden, context) maps': raw_context, 'left and right features': features},
                alt={'raw (hidden, context) maps': raw_context})
    need_reg, need_alt = sum(reg.values()), sum(alt.values())
    return dict(reg=reg, alt=alt, held=held, need_reg=need_reg, need_alt=need_alt,
                bound=need_reg / need_alt,                             # both at their necessary live set
                bound_free_features=need_reg / (need_alt - features),  # even if alt's features cost nothing
                coded=(need_reg + sum(held['reg'].values())) / (need_alt + sum(held['alt'].values())))

def print_accounting(rows):
    "The decoder's necessary memory next to the measured decoder-half peaks, per size (CNN and ViT rows with reg and alt)."
    print('\n| backbone | size (padded) | must be live: reg / alt GB | bound reg / alt | as coded (+ held) reg / alt GB | '
          'its ratio | measured decoder peak reg / alt GB | measured ratio |\n|---|---|---|---|---|---|---|---|')
    for reg in (r for r in rows if r['impl'] == 'reg'):
        alt = next((r for r in rows if r['impl'] == 'alt' and (r['backbone'], r['H'], r['W']) ==
                    (reg['backbone'], reg['H'], reg['W'])), None)
        if alt is None: continue
        m = decoder_memory(reg['cfg'], reg['enc']['padded'], reg['enc']['feat'][1])
        cr, ca = (m['need_' + k] + sum(m['held'][k].values()) for k in ('reg', 'alt'))
        (ph, pw), dr, da = reg['enc']['padded'], reg['dec']['peak'], alt['dec']['peak']
        print(f"| {reg['backbone']} | {reg['H']}×{reg['W']} ({ph}×{pw}) | {_gb(m['need_reg']):.2f} / {_gb(m['need_alt']):.2f} | "
              f"{m['bound']:.2f}× (features free: {m['bound_free_features']:.2f}×) | {_gb(cr):.2f} / {_gb(ca):.2f} | "
              f"{m['coded']:.2f}× | {_gb(dr):.2f} / {_gb(da):.2f} | {dr / da:.2f}× |")

def measure_config(backbone, H, W, impls, tmp, preset='base', flops=True):
    "Encoder half once, decoder half per impl; rows of assembled results."
    feats = str(Path(tmp) / f'{backbone}-{H}x{W}.pt')
    enc = run('features', backbone=backbone, H=H, W=W, out=feats, preset=preset)
    fl = run('flops', backbone=backbone, H=H, W=W) if flops and preset == 'base' else None
    cfg = build(backbone, 'reg', H, W, device='meta', preset=preset).cfg  # for `decoder_memory`
    rows = []
    for impl in impls:
        dec = run('decode', backbone=backbone, impl=impl, H=H, W=W, features=feats, preset=preset)
        total = enc['secs'] + dec['secs'] + (ITERS - PROBE) * dec['per_iter']
        rows.append(dict(backbone=backbone, impl=impl, H=H, W=W, enc=enc, dec=dec, total=total, flops=fl, cfg=cfg,
                         peak=max(enc['peak'], dec['peak']), wall=enc['wall'] + dec['wall']))
    os.remove(feats)
    return rows

def print_rows(rows, rate):
    print(f'| backbone | corr | size (padded) | encoder s | decoder set-up s | s / iteration | {ITERS} iterations s '
          f'(assembled) | GFLOP/s (share of matmul) | peak +GB encoder / decoder | peak +GB | wall s (encoder + {PROBE} iterations) |')
    print('|---|---|---|---|---|---|---|---|---|---|---|')
    for r in rows:
        e, d, f = r['enc'], r['dec'], r['flops']
        setup = d['secs'] - (PROBE - 1) * d['per_iter']  # context, volume or tables, first lookup, last iteration's tail
        rate_s = '–'
        if f:
            work = f['encoder'] + f['decoder_fixed'] + ITERS * f['per_iter']
            rate_s = f"{work / r['total'] / 1e9:.1f} ({work / r['total'] / 1e9 / rate:.0%})"
        print(f"| {r['backbone']} | {r['impl']} | {r['H']}×{r['W']} ({e['padded'][0]}×{e['padded'][1]}) | {e['secs']:.1f} | "
              f"{setup:.1f} | {d['per_iter']:.2f} | {r['total']:.1f} | {rate_s} | {_gb(e['peak']):.2f} / {_gb(d['peak']):.2f} | "
              f"{_gb(r['peak']):.2f} | {r['wall']:.0f} |", flush=True)

def raft_comparison(H, W, tmp, rounds=3):
    "Our CNN model as it runs against the same model doing RAFT-Stereo's extra work: alternating rounds in one process."
    feats = str(Path(tmp) / f'cnn-{H}x{W}-cmp.pt')
    enc = run('features', backbone='cnn', H=H, W=W, out=feats)
    c = run('compare', H=H, W=W, features=feats, rounds=rounds)
    mem = {k: run('decode', backbone='cnn', impl='reg', H=H, W=W, features=feats, raft_work=k == 'raft')['peak']
           for k in ('ours', 'raft')}
    os.remove(feats)
    f_ours, f_raft = run('flops', backbone='cnn', H=H, W=W), run('flops', backbone='cnn', H=H, W=W, raft_work=True)
    med = lambda xs: sorted(xs)[len(xs) // 2]
    out = dict(enc=enc, f_ours=f_ours, f_raft=f_raft, rounds=rounds)
    for k, f in (('ours', f_ours), ('raft', f_raft)):
        it, dec = med([d['per_iter'] for d in c[k]]), med([d['secs'] for d in c[k]])
        out |= {f'it_{k}': it, f'its_{k}': [d['per_iter'] for d in c[k]], f't_{k}': enc['secs'] + dec + (ITERS - PROBE) * it,
                f'w_{k}': f['encoder'] + f['decoder_fixed'] + ITERS * f['per_iter'], f'peak_{k}': max(enc['peak'], mem[k])}
    return out


def main(argv=()):
    argv = list(argv or sys.argv[1:])
    import torch
    sys.path.insert(0, str(HERE))
    m = run('matmul'); rate = m['cpu']
    sizes = [(256, 512)] + ([] if '--quick' in argv else [(384, 768)])
    print(f'torch {torch.__version__}, {THREADS} thread(s), fp32 CPU, batch 1, {ITERS} iterations; no GPU used; '
          f'load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs at the start; times are CPU seconds; '
          f"matmul rate {rate:.1f} GFLOP per CPU second ({m['wall']:.1f} per wall second; 1024², same run, {THREADS} thread(s))\n")
    with tempfile.TemporaryDirectory() as tmp:
        if '--middlebury-only' not in argv: small_sizes(sizes, rate, argv, tmp)
        if '--middlebury' in argv or '--middlebury-only' in argv: middlebury(rate, tmp)
        print(f'\nload average at the end: {os.getloadavg()[0]:.1f}')


def small_sizes(sizes, rate, argv, tmp):
    "The tables at 256×512 and 384×768, the comparison with RAFT-Stereo's work pattern, the direct check."
    rows = []
    for H, W in sizes:
        for backbone in ('cnn', 'vit'): rows += measure_config(backbone, H, W, ('reg', 'alt'), tmp)
    print_rows(rows, rate)
    print_accounting(rows)

    H, W = REFERENCE['size'] if '--quick' not in argv else sizes[-1]
    c = raft_comparison(H, W, tmp)
    print(f"\nCNN, reg, {H}×{W}, {ITERS} iterations, equal settings, {c['rounds']} alternating rounds in one process "
          f"(medians), load average {os.getloadavg()[0]:.1f}:\n")
    print(f'| work pattern | s / iteration (each round) | {ITERS} iterations s | GFLOP ({ITERS} iterations) | peak +GB |\n|---|---|---|---|---|')
    for name, k in (('ours: mask head at the last iteration only', 'ours'), ("RAFT-Stereo's: mask head every iteration, "
                     'one unused pyramid level', 'raft')):
        print(f"| {name} | {', '.join(f'{x:.2f}' for x in c['its_' + k])} | {c['t_' + k]:.1f} | {c['w_' + k] / 1e9:.0f} | "
              f"{_gb(c['peak_' + k]):.2f} |")
    print(f"\nspeed-up at equal settings: {c['t_raft'] / c['t_ours']:.3f}× for the whole model, "
          f"{c['it_raft'] / c['it_ours']:.3f}× per iteration "
          f"(work ratio {c['w_raft'] / c['w_ours']:.3f}× whole, {c['f_raft']['per_iter'] / c['f_ours']['per_iter']:.3f}× per iteration)")
    ours_rate = c['w_ours'] / c['t_ours'] / 1e9
    print(f"reference: RAFT-Stereo's published code at {H}×{W}, {ITERS} iterations, fp32, 2 threads on this kind of machine: "
          f"about {REFERENCE['secs']:.0f} s and +{REFERENCE['extra_gb']:.1f} GB at about 90 % of the matmul rate; "
          f"ours here: {c['t_ours']:.1f} CPU s on one thread, +{_gb(c['peak_ours']):.2f} GB, "
          f"{ours_rate:.1f} GFLOP per CPU second = {ours_rate / rate:.0%} of this run's matmul rate")

    if '--direct' in argv:
        H, W = sizes[0]
        d = run('direct', backbone='cnn', impl='reg', H=H, W=W)
        a = next(r for r in rows if (r['backbone'], r['impl'], r['H']) == ('cnn', 'reg', H))
        print(f"\ncheck of the assembled total, CNN reg {H}×{W}: one direct {ITERS}-iteration call took {d['secs']:.1f} CPU s "
              f"(+{_gb(d['peak']):.2f} GB); the assembled row says {a['total']:.1f} s (+{_gb(a['peak']):.2f} GB)")


def middlebury(rate, tmp):
    "CNN reg and alt at full Middlebury-F size; the ViT variant's padding and position embeddings at that size."
    H, W = MIDDLEBURY_F
    print(f'\nMiddlebury-F size {H}×{W}, load average {os.getloadavg()[0]:.1f}:\n')
    mrows = measure_config('cnn', H, W, ('reg', 'alt'), tmp)
    print_rows(mrows, rate)
    print_accounting(mrows)
    reg, alt = mrows
    m = decoder_memory(reg['cfg'], reg['enc']['padded'], reg['enc']['feat'][1])
    print(f"\nalt / reg at {H}×{W}: time {alt['total'] / reg['total']:.2f}×, "
          f"whole-inference peak memory reg / alt {reg['peak'] / alt['peak']:.2f}×, "
          f"decoder-half peak memory reg / alt {reg['dec']['peak'] / alt['dec']['peak']:.2f}× "
          f"(bound {m['bound']:.2f}× with both at the tensors they must hold, {m['coded']:.2f}× with what the code also "
          f"holds, {m['bound_free_features']:.2f}× if alt's features cost nothing)")
    for k in ('reg', 'alt'):
        print(f"{k} must hold: " + ', '.join(f'{name} {_gb(b):.3f} GB' for name, b in m[k].items())
              + '; the code also holds: ' + ', '.join(f'{name} {_gb(b):.3f} GB' for name, b in m['held'][k].items()))
    v = measure_config('vit', H, W, ('reg',), tmp, preset='tiny')[0]
    print(f"\nViT variant at {H}×{W} (functional check with a tiny ViT, 16×16 patches, position embeddings "
          f"interpolated from a 14×28 grid to {v['enc']['padded'][0] // 16}×{v['enc']['padded'][1] // 16}; "
          f"padded to {v['enc']['padded'][0]}×{v['enc']['padded'][1]}): features {v['enc']['feat']}, "
          f"finite output {v['dec']['finite']}, encoder {v['enc']['secs']:.0f} s")

if __name__ == '__main__':
    main()
