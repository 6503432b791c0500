"The tutorial `nbs/tutorials/mim_vs_scratch.ipynb` runs end to end with its tiny parameter set and prints a finite table."
import importlib.util, json, math, os, subprocess, sys
from pathlib import Path
import pytest

from conftest import REPO

NB = REPO / 'nbs' / 'tutorials' / 'mim_vs_scratch.ipynb'
TINY = REPO / 'nbs' / 'tutorials' / 'configs' / 'tiny.yaml'
NEEDS = ('stereomae.mae', 'stereomae.disparity')


def test_configs_parse():
    "Every YAML file beside the tutorial sets only parameters the notebook declares."
    import yaml
    nb = json.loads(NB.read_text())
    cell = next(c for c in nb['cells'] if 'parameters' in c.get('metadata', {}).get('tags', []))
    declared = {line.split('=')[0].strip() for line in ''.join(cell['source']).splitlines() if '=' in line and not line.startswith(' ')}
    cfgs = sorted(TINY.parent.glob('*.yaml'))
    assert {c.name for c in cfgs} >= {'tiny.yaml', 'full.yaml', 'cpu_long.yaml', 'gpu.yaml'}, cfgs
    for cfg in cfgs:
        keys = set(yaml.safe_load(cfg.read_text()))
        assert keys <= declared, f'{cfg.name} sets unknown parameters {sorted(keys - declared)}'


@pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in NEEDS), reason=f'needs {NEEDS}')
def test_tutorial_tiny(tmp_path):
    papermill = Path(sys.executable).parent / 'papermill'
    out = tmp_path / 'out'
    r = subprocess.run([str(papermill), str(NB), str(tmp_path / 'run.ipynb'), '-f', str(TINY), '-p', 'out_dir', str(out),
                        '-k', 'python3', '--no-progress-bar'], capture_output=True, text=True, cwd=tmp_path, timeout=900,
                       env={k: v for k, v in os.environ.items() if k != 'MPLBACKEND'})  # the kernel's inline backend, as on the docs site
    assert r.returncode == 0, f'the tutorial failed:\n{r.stderr[-6000:]}'
    res = json.loads((out / 'results.json').read_text())
    arms = ['scratch', 'scratch+compute', 'random-frozen', 'paper', 'croco', 'mum']
    assert sorted({row['arm'] for row in res['runs']}) == sorted(arms)
    assert len(res['runs']) == len(arms) * 2, 'two seeds per arm'
    for row in res['runs']:
        for test in ('target', 'source', 'Motorcycle'):
            for k in ('epe', 'bad2'): assert math.isfinite(row[f'{test} {k}']), (row, test, k)
        assert math.isfinite(row['target epe_noc']) and math.isfinite(row['source epe_noc'])
    # the arms of one seed share the stage-2 start: the random-encoder arms see the same encoder before training
    assert {k.split(' | ')[0] for k in res['probes']} == {'random', 'paper', 'croco', 'mum', 'scratch, after stage 2', 'scratch+compute, after stage 2'}
    for a in arms: assert f'| {a} |' in res['table'] and '±' in res['table']
    assert "| *SGBM (OpenCV, no training)* |" in res['table'] and "RAFT-Stereo's CNN" in res['table']
    assert '| croco − scratch |' in res['paired_table'] and '| paper − random-frozen |' in res['paired_table']
    for v in res['verdicts'].values():
        assert v['low'] <= v['mean'] <= v['high'] and math.isclose(v['high'] - v['mean'], v['half'], rel_tol=1e-9, abs_tol=1e-12)
    assert any('Cross-view MIM (`croco`) beats `scratch`' in s for s in res['summary'])
    assert any("The paper's design stays within the interval" in s for s in res['summary'])
    assert any("The probe's reach: the encoder that stage 2 trained (`scratch, after stage 2`)" in s for s in res['summary'])
    assert {k.split(' | ')[0] for k in res['sweep']} == {'scratch', min(['paper', 'croco', 'mum'], key=lambda a: res['mean'][a]['target epe'])}
    assert 0 < res['motorcycle_beyond'] < 0.05, 'the Motorcycle pair is scaled into the training range'
    assert math.isfinite(res['cpu_seconds']) and res['cpu_seconds'] > 0 and res['threads'] >= 1
    # what the reader sees: the outputs of the executed notebook, not its source
    outs = [o for c in json.loads((tmp_path / 'run.ipynb').read_text())['cells'] if c['cell_type'] == 'code' for o in c['outputs']]
    shown = [''.join(o.get('data', {}).get('text/markdown', '')) for o in outs]
    for t in (res['table'], res['paired_table'], res['probe_table']): assert any(t.strip() in x for x in shown), f'not displayed: {t[:80]}'
    assert any('Cross-view MIM' in t and 'min of CPU time' in t for t in shown), 'no verdicts or run time displayed'
    assert sum('image/jpeg' in o.get('data', {}) for o in outs) >= 4, 'figures missing (data, label sweep, curves, maps)'
    for f in ('labels.png', 'curves.png', 'disparity.png', 'results.json'): assert (out / f).is_file(), f
