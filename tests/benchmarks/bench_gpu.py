"""Issue 19's table in one run: the kit's training steps against the reference code on the same work, MFU against this
device's measured matmul rate, the speed options on and off, host reads per step, and the data pipeline per loader and
worker count. Usage: `python tests/benchmarks/bench_gpu.py [--quick]` (or `run.py gpu`; `--quick`: tiny shapes, any
device, seconds: the test suite runs it on a CPU to keep the script working).

Reference code is never part of the kit. It is cloned at run time into a temporary folder (`git clone --depth 1`), or
copied from a local checkout named by `STEREOMAE_REF_MAE` / `STEREOMAE_REF_RAFT_STEREO` (a GPU machine without network:
carry a checkout there); where neither works its rows say "skipped" and why.
- MAE (facebookresearch/mae, `models_mae.py`): ViT-B/16 + 8×512 decoder on 2·batch square images of 196 tokens — the
  tokens of `batch` pairs of the paper's preset (224×448, 16×32 patches: 196 per view). timm >= 0.9 dropped the
  `qk_scale` argument its blocks pass; the source is read with that one argument removed, nothing else changes.
- RAFT-Stereo (princeton-vl/RAFT-Stereo): its model and its training step (train_stereo.py: sequence loss with its
  asserts, AdamW, GradScaler with its mixed precision, clipping at 1.0, OneCycle), same batch, crop and iterations.
Every step runs under bf16 autocast on a GPU (the reference's RAFT-Stereo: its own fp16 `--mixed_precision`), fp32 on a CPU.
"""
import argparse, contextlib, importlib, os, shutil, subprocess, sys, tempfile, time, types
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE)); sys.path.insert(0, str(HERE.parents[1]))
from bench_matmul import matmul_gflops, matmul_peak
from stereomae import builders, train as T
from stereomae.mae import PRESETS, MaeConfig, build_mae

REFERENCES = {'mae': ('https://github.com/facebookresearch/mae', 'STEREOMAE_REF_MAE'),
              'raft_stereo': ('https://github.com/princeton-vl/RAFT-Stereo', 'STEREOMAE_REF_RAFT_STEREO')}


# ------------------------------------------------------------------ reference code, fetched at run time
def fetch_reference(name: str, into: Path) -> tuple[Path | None, str]:
    "A checkout of reference `name` under `into` (from the environment's local copy, else a shallow clone), or None and why."
    url, env = REFERENCES[name]
    dest = into / name
    if os.environ.get(env):
        src = Path(os.environ[env])
        if not src.is_dir(): return None, f"{env}={src} is not a folder"
        shutil.copytree(src, dest, ignore=shutil.ignore_patterns('.git')); return dest, f'copied from {src}'
    try:
        r = subprocess.run(['git', 'clone', '-q', '--depth', '1', url, str(dest)], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e: return None, f'git clone {url} failed ({type(e).__name__})'
    if r.returncode: return None, f"git clone {url} failed ({(r.stderr.strip().splitlines() or ['?'])[-1][:120]}); set {env} to a local checkout"
    return dest, f'cloned from {url}'


def mae_reference(repo: Path):
    "MAE's `models_mae` module from a checkout (timm >= 0.9: its blocks take no `qk_scale`; numpy >= 1.24: no `np.float`)."
    import numpy as np
    if not hasattr(np, 'float'): np.float = float        # its position-embedding helper (run once, at construction)
    sys.path.insert(0, str(repo))
    src = (repo / 'models_mae.py').read_text().replace('qk_scale=None, ', '')
    mod = types.ModuleType('models_mae'); mod.__file__ = str(repo / 'models_mae.py')
    exec(compile(src, mod.__file__, 'exec'), mod.__dict__)
    return mod


def raft_stereo_reference(repo: Path):
    "RAFT-Stereo's model class and training loss from a checkout (without `opt_einsum` installed: torch's einsum in its place)."
    try: import opt_einsum  # noqa: F401
    except ImportError: sys.modules['opt_einsum'] = types.SimpleNamespace(contract=torch.einsum)
    sys.path.insert(0, str(repo))
    raft = importlib.import_module('core.raft_stereo')
    src = (repo / 'train_stereo.py').read_text()
    loss_src = src[src.index('def sequence_loss'):src.index('def fetch_optimizer')]
    ns = {'torch': torch}; exec(compile(loss_src, str(repo / 'train_stereo.py'), 'exec'), ns)
    return raft.RAFTStereo, ns['sequence_loss']


# ------------------------------------------------------------------ timing
def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize()


def time_steps(step, device, repeats: int, warmup: int = 2) -> float:
    "Median seconds of `step()` after `warmup` calls (the device synchronised around each)."
    for _ in range(warmup): step()
    times = []
    for _ in range(repeats):
        sync(device); t = time.perf_counter(); step(); sync(device); times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def step_flops(step) -> float:
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as fc: step()
    return fc.get_total_flops()


def peak_memory(step, device) -> float | None:
    if device.type != 'cuda': return None
    torch.cuda.reset_peak_memory_stats(); step(); torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**30


def autocast(device):
    return torch.autocast('cuda', dtype=torch.bfloat16) if device.type == 'cuda' else contextlib.nullcontext()


# ------------------------------------------------------------------ the kit's steps (the engine's own train_step)
def engine_state(kind: str, params: dict, device, data: dict | None = None, **options):
    "A training state of the engine, as `fit` builds it, on in-memory batches (no loader in the timing) unless `data` is None."
    setup = builders.pretrain_setup if kind == 'pretrain' else builders.finetune_setup
    job = setup({**params, 'runs_dir': '', 'device': str(device), 'progress': False, 'log_every': 10**6,
                 'precision': 'bf16' if device.type == 'cuda' else 'fp32', **options})
    torch.manual_seed(0)
    state, _ = T._prepare(job.model, job.task, data if data is not None else job.train_data, job.cfg, job.configs, job.collate_fn)
    return state


def pairs(n: int, size, disp: bool = False, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    d = {'left': torch.rand(n, 3, *size, generator=g), 'right': torch.rand(n, 3, *size, generator=g)}
    if disp: d |= {'disp': 20 * torch.rand(n, 1, *size, generator=g), 'valid': torch.ones(n, 1, *size, dtype=torch.bool)}
    return d


def engine_step(state):
    def step(): T.train_step(state); state.pending.clear()   # the numbers stay on the device, as between log steps
    return step


def host_reads(state) -> int:
    T.train_step(state); state.pending.clear()
    with T.HostSyncs(T.host_resident(state.optimizer)) as s: T.train_step(state)
    state.pending.clear()
    return len(s.calls)


# ------------------------------------------------------------------ reference steps
def mae_ref_step(mod, cfg: MaeConfig, images: int, device, quick: bool):
    (H, W), (ph, pw) = cfg.img_size, cfg.patch_size
    side = int(round(((H // ph) * (W // pw)) ** 0.5)) * ph   # square images with the same tokens per view
    if quick: model = mod.MaskedAutoencoderViT(img_size=side, patch_size=ph, embed_dim=cfg.embed_dim, depth=cfg.depth,
                                               num_heads=cfg.num_heads, decoder_embed_dim=cfg.decoder_dim, decoder_depth=cfg.decoder_depth,
                                               decoder_num_heads=cfg.decoder_heads, mlp_ratio=cfg.mlp_ratio)
    else: model = mod.mae_vit_base_patch16_dec512d8b()
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.05)
    x = torch.rand(images, 3, side, side, device=device)
    def step():
        with autocast(device): loss, _, _ = model(x, mask_ratio=cfg.mask_ratio)
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    return step


def raft_ref_step(RAFTStereo, ref_loss, batch: int, crop, iters: int, device, hidden: int = 128):
    args = argparse.Namespace(hidden_dims=[hidden] * 3, corr_implementation='reg', shared_backbone=False, corr_levels=4,
                              corr_radius=4, n_downsample=2, context_norm='batch', slow_fast_gru=False, n_gru_layers=3,
                              mixed_precision=device.type == 'cuda')
    model = RAFTStereo(args).to(device).train(); model.freeze_bn()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=1e-5, eps=1e-8)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-4, 10**6, pct_start=0.01, cycle_momentum=False, anneal_strategy='linear')
    scaler = torch.amp.GradScaler(device.type, enabled=args.mixed_precision)
    d = pairs(batch, crop, disp=True)
    l, r, flow, valid = (255 * d['left']).to(device), (255 * d['right']).to(device), -d['disp'].to(device), d['valid'][:, 0].float().to(device)
    def step():
        opt.zero_grad()
        loss, _ = ref_loss(model(l, r, iters=iters), flow, valid)
        scaler.scale(loss).backward(); scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt); sched.step(); scaler.update()
    return step


# ------------------------------------------------------------------ data pipeline
def loader_rate(kind: str, params: dict, workers: int, batches: int) -> float:
    "Samples per second out of the engine's batch stream (the job's own datasets, transforms and collate) with `workers` processes."
    state = engine_state(kind, {**params, 'num_workers': workers}, torch.device('cpu'))
    next(state.data)                                      # start-up (workers, texture banks) not counted
    t = time.perf_counter()
    for _ in range(batches): next(state.data)
    return batches * state.cfg.batch_size / (time.perf_counter() - t)


# ------------------------------------------------------------------ the run
def configs(quick: bool) -> dict:
    if quick:
        tiny = dict(preset='tiny')
        return dict(mim=tiny, mim_batches=(2,), mim_cfg=PRESETS['tiny'],
                    vit=dict(preset='tiny', hidden_dims=[32, 32, 32], neck_dims=[24, 48, 96, 192], neck_width=64, feature_dim=64),
                    cnn=dict(backbone='cnn', hidden_dims=[32, 32, 32]), ref_hidden=32,
                    s2_batch=1, s2_crops=((32, 64),), s2_cnn_crop=(32, 64), iters=2, repeats=1, warmup=1,
                    data_mim=dict(preset='tiny', batch_size=2, train_data=[dict(dataset='synthetic', n=16, size=[64, 128])]),
                    data_s2=dict(preset='tiny', batch_size=2, crop=[64, 128], train_data=[dict(dataset='synthetic', n=16, size=[96, 160], max_disp=24)],
                                 hidden_dims=[32, 32, 32], neck_dims=[24, 48, 96, 192], neck_width=64, feature_dim=64),
                        workers=(0, 1), loader_batches=2, e2e_steps=2, compile_modes=('off', 'trace'))
    cpus = os.cpu_count() or 1
    return dict(mim=dict(preset='paper'), mim_batches=(32, 128), mim_cfg=PRESETS['paper'],
                vit=dict(preset='paper'), cnn=dict(backbone='cnn'), ref_hidden=128,
                s2_batch=8, s2_crops=((224, 448), (320, 736)), s2_cnn_crop=(320, 736), iters=22, repeats=5, warmup=2,
                data_mim=dict(preset='paper', batch_size=64, train_data=[dict(dataset='synthetic', n=4096, size=[256, 512])]),
                data_s2=dict(preset='paper', batch_size=8, crop=[320, 736], train_data=[dict(dataset='synthetic', n=4096, size=[400, 800])]),
                workers=sorted({0, 2, 4, 8, min(14, cpus), cpus}), loader_batches=6, e2e_steps=40,
                compile_modes=('off', 'default'))


def main(quick: bool | None = None):
    "The tables; `quick=None`: tiny shapes where no GPU is present (`run.py gpu` on a CPU checks the script, nothing more)."
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if quick is None: quick = device.type != 'cuda'

    c = configs(quick)
    name = torch.cuda.get_device_name() if device.type == 'cuda' else f'CPU, {torch.get_num_threads()} threads'
    peak = matmul_gflops(8192, 10, torch.bfloat16, 'cuda') if device.type == 'cuda' else (matmul_gflops(512, 3) if quick else matmul_peak())
    print(f"torch {torch.__version__}, {name}, {'bf16 autocast' if device.type == 'cuda' else 'fp32'}; measured matmul rate "
          f"{peak / 1e3:.1f} TFLOP/s ({'bf16, 8192²' if device.type == 'cuda' else 'fp32'}), the MFU denominator; "
          f"load average {os.getloadavg()[0]:.2f}{'; --quick: tiny shapes, the script is checked, not the device' if quick else ''}\n")
    mfu = lambda flops, s: f"{flops / s / 1e9:.1f} GFLOP/s, {100 * flops / s / 1e9 / peak:.1f} %"
    tmp = Path(tempfile.mkdtemp(prefix='stereomae-ref-'))
    try:
        refs = {k: fetch_reference(k, tmp) for k in REFERENCES}
        loaders = {'mae': mae_reference, 'raft_stereo': raft_stereo_reference}
        for k, (p, how) in list(refs.items()):
            if p is None: continue
            try: refs[k] = (loaders[k](p), how)
            except Exception as e: refs[k] = (None, f'its code does not import here ({type(e).__name__}: {str(e)[:120]})')
        for k, (p, how) in refs.items(): print(f"- reference {k}: {how if p else 'skipped: ' + how}")
        print()
        rows = []
        # --- stage 1 against MAE's code
        cfg = c['mim_cfg']
        for b in c['mim_batches']:
            state = engine_state('pretrain', {**c['mim'], 'batch_size': b, 'optimizer_impl': 'auto'}, device, pairs(max(b, 4), cfg.img_size))
            ours = engine_step(state); flops = step_flops(ours); s = time_steps(ours, device, c['repeats'], c['warmup'])
            ref = '–'
            if refs['mae'][0]:
                rstep = mae_ref_step(refs['mae'][0], cfg, 2 * b, device, quick)
                rf, rs = step_flops(rstep), time_steps(rstep, device, c['repeats'], c['warmup'])
                ref = f"MAE's code, {2 * b} images of the same tokens: {1e3 * rs:.1f} ms, {mfu(rf, rs)}"
                ratio = f'{s / rs:.2f}'
            else: ratio = '–'
            rows.append((f"MIM step, {'tiny' if quick else 'paper'} preset, {b} pairs", f"{1e3 * s:.1f} ms, {mfu(flops, s)}", ref, ratio))
            del state
        # --- stage 2
        RAFT = refs['raft_stereo'][0]
        for crop in c['s2_crops']:
            st = engine_state('finetune', {**c['vit'], 'batch_size': c['s2_batch'], 'crop': list(crop), 'train_iters': c['iters']},
                              device, pairs(max(c['s2_batch'], 2), crop, disp=True))
            step = engine_step(st); s = time_steps(step, device, c['repeats'], c['warmup']); mem = peak_memory(step, device)
            rows.append((f"stage-2 step, ViT + DPT + RAFT decoder, batch {c['s2_batch']}, {c['iters']} iterations, {crop[0]}×{crop[1]}",
                         f"{s:.3f} s" + (f", {mem:.1f} GB" if mem else ''), '–', '–'))
            del st
        crop = c['s2_cnn_crop']
        st = engine_state('finetune', {**c['cnn'], 'batch_size': c['s2_batch'], 'crop': list(crop), 'train_iters': c['iters']},
                          device, pairs(max(c['s2_batch'], 2), crop, disp=True))
        step = engine_step(st); s = time_steps(step, device, c['repeats'], c['warmup']); mem = peak_memory(step, device)
        ref, ratio = '–', '–'
        if RAFT:
            rstep = raft_ref_step(*RAFT, c['s2_batch'], crop, c['iters'], device, c['ref_hidden'])
            rs, rmem = time_steps(rstep, device, c['repeats'], c['warmup']), peak_memory(rstep, device)
            ref, ratio = f"RAFT-Stereo's own step: {rs:.3f} s" + (f", {rmem:.1f} GB" if rmem else ''), f'{s / rs:.2f}'
        rows.append((f"stage-2 step, RAFT-Stereo CNN, batch {c['s2_batch']}, {c['iters']} iterations, {crop[0]}×{crop[1]}",
                     f"{s:.3f} s" + (f", {mem:.1f} GB peak" if mem else ''), ref, ratio))
        del st
        print('| measure | stereomae | reference | ratio (time, < 1: faster) |\n|---|---|---|---|')
        for r in rows: print('| ' + ' | '.join(r) + ' |')

        # --- speed options on and off, host reads per step
        print('\n| step | option | s / step | vs. all off | host reads per step |\n|---|---|---|---|---|')
        b, crop = c['mim_batches'][0], c['s2_cnn_crop']
        cases = [('MIM', 'pretrain', {**c['mim'], 'batch_size': b}, pairs(max(b, 4), cfg.img_size)),
                 ('stage-2 CNN', 'finetune', {**c['cnn'], 'batch_size': c['s2_batch'], 'crop': list(crop), 'train_iters': c['iters']},
                  pairs(max(c['s2_batch'], 2), crop, disp=True))]
        for label, kind, params, data in cases:
            options = [('all off', dict(optimizer_impl='loop'))] + [(f'compile={m}', dict(optimizer_impl='loop', compile=m)) for m in c['compile_modes'][1:]]
            options += [('AdamW foreach', dict(optimizer_impl='foreach')), ('AdamW fused', dict(optimizer_impl='fused'))]
            if kind == 'finetune': options += [('channels_last', dict(optimizer_impl='loop', channels_last=True)),
                                               ('cuda_graphs', dict(optimizer_impl='loop', cuda_graphs=True))]
            base = None
            for opt_name, opt in options:
                with contextlib.redirect_stdout(open(os.devnull, 'w')) if opt_name == 'cuda_graphs' and device.type != 'cuda' else contextlib.nullcontext():
                    st = engine_state(kind, params, device, data, **opt)
                if opt_name == 'cuda_graphs' and device.type != 'cuda':
                    print(f"| {label} | cuda_graphs | – | – | needs a CUDA device: not measured here |"); continue
                s = time_steps(engine_step(st), device, c['repeats'], c['warmup']); base = base or s
                print(f"| {label} | {opt_name} | {s:.4f} | {s / base:.2f} | {host_reads(st)} |", flush=True)
                del st

        # --- data pipeline per loader and worker count, and the loop with its loader
        print(f"\n| loader (the engine's batch stream) | workers | samples / s |\n|---|---|---|")
        for label, kind, params in (('synthetic MIM pairs + MIM transforms', 'pretrain', c['data_mim']),
                                    ('synthetic disparity + StereoAugmentor', 'finetune', c['data_s2'])):
            for w in c['workers']:
                print(f"| {label}, batch {params['batch_size']} | {w} | {loader_rate(kind, params, w, c['loader_batches']):.1f} |", flush=True)
        w = c['workers'][-1]
        st = engine_state('pretrain', {**c['data_mim'], 'num_workers': w}, device)
        loop = time_steps(engine_step(st), device, c['e2e_steps'], c['warmup']); del st
        st = engine_state('pretrain', c['data_mim'], device, pairs(c['data_mim']['batch_size'], c['mim_cfg'].img_size if not quick else (64, 128)))
        bare = time_steps(engine_step(st), device, c['e2e_steps'], c['warmup']); del st
        print(f"\n`stereomae pretrain`'s loop with synthetic pairs and {w} workers: {1 / loop:.2f} steps/s; on in-memory batches: "
              f"{1 / bare:.2f} steps/s — **{100 * bare / loop:.0f} %** of the bare step rate (target >= 90 %).")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help='tiny shapes: check the script on any device in seconds')
    main(quick=ap.parse_args().quick or None)
