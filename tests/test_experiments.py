"""The experiment notebooks (`nbs/experiments`, run by papermill with their tiny YAML files) and the command line.

Default run: stage 1 and stage 2 (from the stage-1 encoder) under papermill, a failing run, the CLI on a tiny config
and its error paths, and every tiny config through the command line, chained as the real experiments are.
"""
import json, os, subprocess, sys
from pathlib import Path

import pytest

from conftest import REPO

for _m in ('stereomae.mae', 'stereomae.disparity', 'stereomae.augment', 'stereomae.infer'):   # the jobs build these models and data
    pytest.importorskip(_m, reason=f'{_m} has not landed yet')

EXP = REPO / 'nbs' / 'experiments'
CONFIGS = EXP / 'configs'


def _env():
    return {**os.environ, 'PYTHONPATH': os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')]),
            'MPLBACKEND': 'Agg', 'HF_HUB_OFFLINE': '1',
            'OMP_NUM_THREADS': '1'}   # on a shared, oversubscribed CPU, OpenMP threads that spin make small convolutions ~10x slower


def papermill(nb: str, out: Path, yaml: str, cwd: Path, **params):
    args = [sys.executable, '-m', 'papermill', str(EXP / nb), str(out), '-f', str(CONFIGS / yaml), '--cwd', str(cwd), '-k', 'python3', '--log-output']
    for k, v in params.items(): args += ['-p', k, str(v)]
    return subprocess.run(args, capture_output=True, text=True, env=_env(), timeout=900)


def cli(*args, cwd: Path):
    return subprocess.run([sys.executable, '-m', 'stereomae.cli', *map(str, args)], capture_output=True, text=True,
                          env=_env(), cwd=cwd, timeout=900)


def _outputs_text(nb: Path) -> str:
    cells = json.loads(nb.read_text())['cells']
    return '\n'.join(json.dumps(c.get('outputs', [])) for c in cells)


def test_every_config_is_flat_and_known():
    "Each YAML parameter file is a flat mapping whose keys its job accepts (checked without building anything)."
    from stereomae.config import load_params, check_keys
    from stereomae.cli import job_configs
    files = sorted(CONFIGS.glob('*.yaml'))
    targets = {job: job_configs(job) for job in ('pretrain', 'finetune', 'evaluate', 'predict')}
    for f in files:
        check_keys(load_params(f), *targets[f.name.split('_')[0]])
        if f.name.startswith(('pretrain', 'finetune', 'evaluate')):
            assert f.with_name(f.stem.removesuffix('_tiny') + '_tiny.yaml').exists(), f'{f.name} has no tiny CPU version'
    assert len([f for f in files if not f.stem.endswith('_tiny')]) == 9


def test_pretrain_finetune_evaluate_predict_notebooks(tmp_path):
    "Stage 1 under papermill writes its notebook and checkpoints; stage 2 starts from its encoder; the result is evaluated and used."
    r = papermill('pretrain.ipynb', tmp_path / 'pretrain.ipynb', 'pretrain_mse_tiny.yaml', tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'pretrain/mse-tiny: 100%' in r.stderr and '12/12' in r.stderr, r.stderr[-3000:]   # the progress bar, in the log
    assert 'pretrain/mse-tiny: 100%' in _outputs_text(tmp_path / 'pretrain.ipynb')          # and in the output notebook
    run = tmp_path / 'runs' / 'pretrain' / 'mse-tiny'
    assert (tmp_path / 'pretrain.ipynb').exists() and (run / 'checkpoints' / 'step_0000012.pt').exists()
    assert (run / 'weights.safetensors').exists() and (run / 'config.yaml').exists()
    r = papermill('finetune.ipynb', tmp_path / 'finetune.ipynb', 'finetune_sceneflow_mim_tiny.yaml', tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    ft = tmp_path / 'runs' / 'finetune' / 'sceneflow-mim-tiny'
    assert (ft / 'checkpoints' / 'step_0000008.pt').exists() and list((ft / 'figures').glob('*.jpg'))
    assert "'epe'" in _outputs_text(tmp_path / 'finetune.ipynb')
    r = papermill('evaluate_run.ipynb', tmp_path / 'evaluate.ipynb', 'evaluate_sceneflow_tiny.yaml', tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (ft / 'eval' / 'middlebury_Q' / 'metrics.json').exists()
    sample = REPO / 'data_samples' / 'middlebury2014' / 'Motorcycle-perfect'
    r = papermill('predict.ipynb', tmp_path / 'predict.ipynb', 'predict_motorcycle_tiny.yaml', tmp_path,
                  left=sample / 'im0.png', right=sample / 'im1.png', calib=sample / 'calib.txt')
    assert r.returncode == 0, r.stderr[-3000:]
    assert [p.name for p in (tmp_path / 'predictions').iterdir()] == ['Motorcycle-perfect']   # one folder per pair, named after its scene
    assert sorted(p.name for p in (tmp_path / 'predictions' / 'Motorcycle-perfect').iterdir()) == \
        ['cloud_m.ply', 'confidence_lr.npy', 'confidence_lr.png', 'depth_m.npy', 'disp.npy', 'disp.pfm', 'disp.png']


def test_failing_run_exits_nonzero_with_the_error_in_the_notebook(tmp_path):
    r = papermill('pretrain.ipynb', tmp_path / 'bad.ipynb', 'pretrain_mse_tiny.yaml', tmp_path, lrr=0.1)
    assert r.returncode != 0
    text = _outputs_text(tmp_path / 'bad.ipynb')
    assert 'unknown config key' in text and "'lrr'" in text
    assert not (tmp_path / 'runs').exists(), 'nothing is written before the parameters are checked'


def test_cli_runs_a_tiny_config_and_resumes(tmp_path):
    r = cli('finetune', CONFIGS / 'finetune_sceneflow_scratch_tiny.yaml', 'steps=4', 'valid_data=[]', cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / 'runs' / 'finetune' / 'sceneflow-scratch-tiny'
    assert [p.name for p in sorted((run / 'checkpoints').glob('*.pt'))] == ['step_0000004.pt']
    r = cli('finetune', CONFIGS / 'finetune_sceneflow_scratch_tiny.yaml', 'steps=4', 'valid_data=[]', cwd=tmp_path)
    assert r.returncode == 0 and 'resuming' in r.stdout


def test_cli_errors_before_training(tmp_path, monkeypatch, capsys):
    "Parameter mistakes end with exit status 2 and one line naming them, before anything is built or written."
    from stereomae.cli import main
    monkeypatch.chdir(tmp_path)
    for args, msg in [(('pretrain', CONFIGS / 'pretrain_mse_tiny.yaml', 'steps=many'), "steps='many'"),
                      (('finetune', CONFIGS / 'finetune_sceneflow_mim_tiny.yaml'), "weights file 'runs/pretrain/mse-tiny/weights.safetensors' does not exist"),
                      (('finetune', CONFIGS / 'finetune_sceneflow_scratch_tiny.yaml', 'init=imagenet'), "init='imagenet'"),
                      (('pretrain', CONFIGS / 'pretrain_mse.yaml'), "root '/data/SceneFlow' does not exist"),
                      (('evaluate', CONFIGS / 'evaluate_sceneflow_tiny.yaml', 'protocol=kitti'), "protocol 'kitti' unknown"),
                      (('predict', CONFIGS / 'predict_motorcycle_tiny.yaml'), "calibration file 'data_samples/middlebury2014/Motorcycle-perfect/calib.txt' does not exist"),
                      (('predict', CONFIGS / 'predict_motorcycle_tiny.yaml', 'calib='), "left: 'data_samples/middlebury2014/Motorcycle-perfect/im0.png' is no image file, folder or glob that exists"),
                      (('pretrain', tmp_path / 'missing.yaml'), "missing.yaml' does not exist")]:
        assert main([str(a) for a in args]) == 2, args
        assert msg in capsys.readouterr().err, args
    r = cli('pretrain', CONFIGS / 'pretrain_mse_tiny.yaml', 'lrr=1', cwd=tmp_path)      # the same through a real process
    assert r.returncode == 2 and "unknown config key: 'lrr' (did you mean 'lr'" in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / 'runs').exists()


TINY_ORDER = ['pretrain_mse_tiny', 'pretrain_perceptual_tiny', 'pretrain_ssim_tiny', 'finetune_sceneflow_mim_tiny',
              'finetune_sceneflow_timm_tiny', 'finetune_sceneflow_scratch_tiny', 'finetune_middlebury_tiny', 'finetune_eth3d_tiny',
              'evaluate_sceneflow_tiny', 'predict_motorcycle_tiny']   # the order the chained experiments need


def samples_cwd(tmp_path: Path) -> Path:
    "A working folder that sees the repository's data_samples/ and nbs/ where the docs' commands expect them (the repo root)."
    for d in ('data_samples', 'nbs'): (tmp_path / d).symlink_to(REPO / d)
    return tmp_path


def test_every_tiny_config_through_the_cli(tmp_path):
    "All tiny configs, chained like the full experiments (stage 1, stage 2 from it, then the Middlebury/ETH3D fine-tunes)."
    import timm, torch
    w = tmp_path / 'runs' / 'weights' / 'vit_tiny_timm.pth'; w.parent.mkdir(parents=True)
    torch.save(timm.models.VisionTransformer(img_size=64, patch_size=16, embed_dim=128, depth=4, num_heads=4).state_dict(), w)  # the tiny preset's width
    assert sorted(TINY_ORDER) == sorted(p.stem for p in CONFIGS.glob('*_tiny.yaml'))
    samples_cwd(tmp_path)
    for name in TINY_ORDER:
        r = cli(name.split('_')[0], CONFIGS / f'{name}.yaml', cwd=tmp_path)
        assert r.returncode == 0, (name, r.stderr[-3000:])
    # the predict notebook's second command, verbatim: every bundled pair, one folder each, with depth from its calib.txt
    nb = json.loads((EXP / 'predict.ipynb').read_text())
    cmd = next(l.strip() for c in nb['cells'] for l in ''.join(c['source']).splitlines() if 'predict_motorcycle_tiny.yaml left=' in l)
    r = subprocess.run(cmd.replace('stereomae ', f'{sys.executable} -m stereomae.cli ', 1), shell=True, capture_output=True, text=True,
                       env=_env(), cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    folders = sorted(p.name for p in (tmp_path / 'predictions').iterdir())
    assert folders == ['Motorcycle-perfect', 'Motorcycle-perfect-2', 'synthetic-s0-000000-perfect', 'synthetic-s0-000001-perfect',
                       'synthetic-s0-000002-perfect'], folders    # the config's run wrote the first; nothing is written over
    assert (tmp_path / 'predictions' / 'synthetic-s0-000002-perfect' / 'cloud_m.ply').is_file()
    assert r.stdout.count(' px -> ') == 4, r.stdout


def test_every_config_file_the_docs_name_exists_and_a_test_runs_it():
    """Every parameter file a page names (README, chapters, guides, experiments, tutorials) exists, and the suite runs it: a
    tiny one through the command line (test_every_tiny_config_through_the_cli), a full-scale one through its tiny version
    (it needs the real data sets; its keys are checked by test_every_config_is_flat_and_known), the tutorial's tiny.yaml by
    test_tutorial_tiny (its others are checked against the notebook's parameters by test_configs_parse)."""
    import re
    pages = [REPO / 'README.md'] + [p for p in (REPO / 'nbs').rglob('*.ipynb') if not {'_proc', '.ipynb_checkpoints'} & set(p.parts)]
    homes = {CONFIGS: 'experiments', REPO / 'nbs' / 'tutorials' / 'configs': 'tutorial'}
    named = {}
    for p in pages:
        for m in re.finditer(r'(?<![\w-])((?:pretrain|finetune|evaluate|predict)_\w+|tiny|full|cpu_long)\.yaml\b', p.read_text(encoding='utf-8')):
            named.setdefault(m[0], str(p.relative_to(REPO)))
    missing = [f'{n} (named in {p})' for n, p in named.items() if not any((h / n).is_file() for h in homes)]
    assert not missing, f'the docs name config files that do not exist: {missing}'
    assert {'pretrain_mse_tiny.yaml', 'finetune_sceneflow_mim.yaml', 'tiny.yaml'} <= set(named), sorted(named)
    for n in named:
        if (CONFIGS / n).is_file():
            stem = n.removesuffix('.yaml')
            assert (stem if stem.endswith('_tiny') else stem + '_tiny') in TINY_ORDER, f'no test runs {n} (nor a tiny version of it)'


def test_resuming_never_mixes_two_configurations(tmp_path):
    "A finished run called again: a changed recipe is refused unless the checkpoint is named, a changed architecture always."
    base = [CONFIGS / 'finetune_sceneflow_scratch_tiny.yaml', 'steps=2', 'valid_data=[]', 'checkpoint_every=2']
    r = cli('finetune', *base, cwd=tmp_path); assert r.returncode == 0, r.stderr[-2000:]
    ckpt = tmp_path / 'runs' / 'finetune' / 'sceneflow-scratch-tiny' / 'checkpoints' / 'step_0000002.pt'
    r = cli('finetune', *base, 'lr=0.002', 'seed=3', cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count('\n') == 1, r.stderr[-2000:]
    assert 'another recipe or data: lr: 0.0002 -> 0.002; seed: 0 -> 3' in r.stderr, r.stderr
    r = cli('finetune', *base, 'hidden_dims=[16,16,16]', f'resume={ckpt}', cwd=tmp_path)
    assert r.returncode == 2 and 'another architecture' in r.stderr and 'hidden_dims' in r.stderr, r.stderr[-2000:]
    r = cli('finetune', *base, 'lr=0.002', f'resume={ckpt}', 'steps=3', cwd=tmp_path)   # named explicitly: continued
    assert r.returncode == 0 and 'resuming' in r.stdout, r.stderr[-2000:]
    assert (ckpt.parent / 'step_0000003.pt').exists()


def test_the_happy_path_prints_no_warning(tmp_path):
    """A tiny fine-tune, then predict and evaluate with it, with SGBM and with a RAFT-Stereo checkpoint, under Python's
    default warning filters (ResourceWarning and DeprecationWarning shown): nothing but the summary on stdout, an empty stderr."""
    import torch
    from stereomae.disparity import DisparityModel, RAFT_STEREO_REALTIME
    samples_cwd(tmp_path)
    torch.manual_seed(0)
    torch.save({f'module.{k}': v for k, v in DisparityModel(**RAFT_STEREO_REALTIME, hidden_dims=(16,)).raft_stereo_state_dict().items()},
               tmp_path / 'raftstereo-realtime.pth')
    moto = 'data_samples/middlebury2014/Motorcycle-perfect'
    pair = [f'left={moto}/im0.png', f'right={moto}/im1.png', 'formats=[png,npy,pfm,kitti,depth,ply]', 'progress=false']
    for args in [('finetune', CONFIGS / 'finetune_sceneflow_scratch_tiny.yaml', 'steps=2', 'valid_data=[]', 'progress=false'),
                 ('predict', 'model=runs/finetune/sceneflow-scratch-tiny', 'confidence=[lr,updates]', *pair),
                 ('predict', 'model=raftstereo-realtime.pth', 'lr_check=true', 'valid_iters=2', *pair),
                 ('predict', 'model=sgbm', 'model_options={num_disp: 64}', 'vmin=0', 'vmax=64', *pair),
                 ('evaluate', 'model=sgbm', 'progress=false'),
                 ('evaluate', 'model=runs/finetune/sceneflow-scratch-tiny', 'progress=false')]:
        r = subprocess.run([sys.executable, '-W', 'default', '-m', 'stereomae.cli', *map(str, args)], capture_output=True, text=True,
                           env=_env(), cwd=tmp_path, timeout=900)
        assert r.returncode == 0 and r.stderr == '', (args, r.stderr[-3000:])
        assert 'model: ' in r.stdout or args[0] == 'finetune', r.stdout
    assert sorted(p.name for p in (tmp_path / 'predictions').iterdir()) == ['Motorcycle-perfect', 'Motorcycle-perfect-2', 'Motorcycle-perfect-3']
