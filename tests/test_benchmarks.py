"Benchmarks have one home: `tests/benchmarks/run.py` finds every `bench_*.py`, each with a `main()`."
import importlib.util, subprocess, sys
import pytest
from conftest import REPO

BENCH = REPO / 'tests' / 'benchmarks'


def _load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def test_every_benchmark_has_a_main():
    files = sorted(BENCH.glob('bench_*.py'))
    assert BENCH / 'bench_matmul.py' in files
    sys.path.insert(0, str(BENCH))
    for f in files: assert callable(getattr(_load(f), 'main', None)), f'{f.name} has no main()'


def test_matmul_rate_is_measured():
    assert _load(BENCH / 'bench_matmul.py').matmul_gflops(64, repeats=2) > 0


def test_runner_prints_markdown_tables():
    r = subprocess.run([sys.executable, str(BENCH / 'run.py'), 'matmul'], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert '## bench_matmul' in r.stdout and '| fp32 CPU | 1024 |' in r.stdout
    r = subprocess.run([sys.executable, str(BENCH / 'run.py'), 'nosuch'], capture_output=True, text=True)
    assert r.returncode != 0 and 'no benchmark named' in r.stderr


# ---------------------------------------------------------------- bench_disparity.decoder_memory
# hand counts at a padded 128×256 image, fp32 (4 bytes), batch 1
HAND = {
    # RAFT-Stereo defaults: 1/4 -> 32×64 = 2048 px, GRU levels 2048, 16×32 = 512, 8×16 = 128 px, 128 channels each
    'default': (dict(), dict(
        net=4 * 128 * (2048 + 512 + 128), inp=4 * 3 * 128 * (2048 + 512 + 128), disp=4 * 2048, taps=4 * 4 * 9 * 2048,
        pyramid=4 * 2048 * ((64 + 20) + (32 + 20) + (16 + 20) + (8 + 20)),  # W_l + 2·(2R+2) columns per level
        features=4 * 2 * 256 * 2048, raw=4 * 2 * 128 * (2048 + 512 + 128))),
    # 1/8 -> 16×32 = 512 px, second GRU level 8×16 = 128 px; hidden 128 (finest), 96; 2 levels of radius 3
    'small': (dict(n_downsample=3, n_gru_layers=2, hidden_dims=(64, 96, 128), corr_levels=2, corr_radius=3), dict(
        net=4 * (128 * 512 + 96 * 128), inp=4 * 3 * (128 * 512 + 96 * 128), disp=4 * 512, taps=4 * 2 * 7 * 512,
        pyramid=4 * 512 * ((32 + 16) + (16 + 16)), features=4 * 2 * 256 * 512, raw=4 * 2 * (128 * 512 + 96 * 128))),
}


def _bench_disparity():
    sys.path.insert(0, str(BENCH))
    return _load(BENCH / 'bench_disparity.py')


def _parts(m, impl):
    "The accounting's parts in the short names of HAND."
    short = {'GRU hidden states (net)': 'net', 'context biases z, r, q (inp)': 'inp', 'disparity at 1/2^n': 'disp',
             'correlation taps of the iteration': 'taps', 'correlation pyramid (reg)': 'pyramid',
             'left and right features (alt)': 'features'}
    assert set(m[impl]) == set(short) - {'left and right features (alt)' if impl == 'reg' else 'correlation pyramid (reg)'}
    return {short[k]: v for k, v in m[impl].items()}


@pytest.mark.parametrize('name', list(HAND))
def test_decoder_memory_by_hand(name):
    import torch
    from stereomae.disparity import DisparityModel
    opts, hand = HAND[name]
    with torch.device('meta'): cfg = DisparityModel(**opts).cfg
    m = _bench_disparity().decoder_memory(cfg, (128, 256))
    common = {k: hand[k] for k in ('net', 'inp', 'disp', 'taps')}
    assert _parts(m, 'reg') == common | {'pyramid': hand['pyramid']}
    assert _parts(m, 'alt') == common | {'features': hand['features']}
    assert m['held'] == dict(reg={'raw (hidden, context) maps': hand['raw'], 'left and right features': hand['features']},
                             alt={'raw (hidden, context) maps': hand['raw']})
    need_reg, need_alt = sum(common.values()) + hand['pyramid'], sum(common.values()) + hand['features']
    assert (m['need_reg'], m['need_alt']) == (need_reg, need_alt)
    assert m['bound'] == pytest.approx(need_reg / need_alt)
    assert m['bound_free_features'] == pytest.approx(need_reg / sum(common.values()))
    assert m['coded'] == pytest.approx((need_reg + hand['raw'] + hand['features']) / (need_alt + hand['raw']))
    with pytest.raises(ValueError, match='multiples of 32'): _bench_disparity().decoder_memory(cfg, (100, 256))


def _nbytes(ts):
    "Bytes of the distinct storages behind tensors (chunks of one tensor count once)."
    seen = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in ts}
    return sum(seen.values())


def _tensors(obj):
    "The tensor attributes of an object, lists of tensors included."
    import torch
    out = []
    for v in vars(obj).values():
        if isinstance(v, torch.Tensor): out.append(v)
        elif isinstance(v, (list, tuple)): out += [t for t in v if isinstance(t, torch.Tensor)]
    return out


@pytest.mark.parametrize('name', list(HAND))
@pytest.mark.parametrize('impl', ['reg', 'alt'])
def test_decoder_memory_matches_the_tensors_the_decoder_holds(name, impl, monkeypatch):
    "The accounting against the real tensors of a run: what the update block gets, what CorrPyramid1D keeps."
    import torch
    import stereomae.disparity as sd
    opts, _ = HAND[name]
    torch.manual_seed(0)
    model = sd.DisparityModel(corr_implementation=impl, **opts).eval()
    seen = {}
    class Recording(sd.CorrPyramid1D):
        def __init__(self, *a, **k): super().__init__(*a, **k); seen['corr_fn'] = self
    monkeypatch.setattr(sd, 'CorrPyramid1D', Recording)
    hook = model.update_block.register_forward_pre_hook(lambda mod, args: seen.setdefault('args', args))
    decode = model._decode
    model._decode = lambda f, *a: (seen.setdefault('caller', (f.left, f.right, f.context)), decode(f, *a))[1]
    g = torch.Generator().manual_seed(0)
    left, right = torch.rand(1, 3, 128, 256, generator=g), torch.rand(1, 3, 128, 256, generator=g)
    with torch.no_grad(): model(left, right, iters=2)
    hook.remove()
    net, inp, corr, disp = seen['args'][:4]
    fl, fr, ctx = seen['caller']
    m = _bench_disparity().decoder_memory(model.cfg, (128, 256), feature_dim=fl.shape[1])
    real = dict(net=_nbytes(net), inp=_nbytes([t for level in inp for t in level]), disp=_nbytes([disp]),
                taps=_nbytes([corr]))
    real['pyramid' if impl == 'reg' else 'features'] = _nbytes(_tensors(seen['corr_fn']))
    assert _parts(m, impl) == real
    held = {'raw (hidden, context) maps': _nbytes([t for level in ctx for t in level])}
    if impl == 'reg': held['left and right features'] = _nbytes([fl, fr])
    assert m['held'][impl] == held


def test_gpu_benchmark_quick_runs_on_a_cpu_and_skips_absent_references(tmp_path):
    "bench_gpu.py --quick: every table of issue 19 on tiny shapes; a reference that cannot be had is skipped with the reason."
    import os
    env = {**os.environ, 'STEREOMAE_REF_MAE': str(tmp_path / 'no-mae'), 'STEREOMAE_REF_RAFT_STEREO': str(tmp_path / 'no-raft'),
           'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(REPO)}
    r = subprocess.run([sys.executable, str(BENCH / 'bench_gpu.py'), '--quick'], capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    assert f"reference mae: skipped: STEREOMAE_REF_MAE={tmp_path / 'no-mae'} is not a folder" in out
    for line in ('| MIM step, tiny preset, 2 pairs |', '| stage-2 step, RAFT-Stereo CNN, batch 1, 2 iterations, 32×64 |',
                 '| MIM | all off |', '| stage-2 CNN | channels_last |', '| stage-2 CNN | cuda_graphs | – | – | needs a CUDA device',
                 '| synthetic MIM pairs + MIM transforms, batch 2 | 1 |', "`stereomae pretrain`'s loop with synthetic pairs"):
        assert line in out, (line, out)
    rows = [l for l in out.splitlines() if l.startswith(('| MIM |', '| stage-2 CNN |')) and 'cuda_graphs' not in l]
    assert rows and all(l.rstrip(' |').endswith('| 0') for l in rows), rows   # no host read in any option's step
