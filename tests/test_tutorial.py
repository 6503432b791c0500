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
    assert {c.name for c in cfgs} >= {'tiny.yaml', 'full.yaml', 'cpu_long.yaml'}, cfgs
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
    arms = {row['arm'] for row in res['runs']}
    assert arms == {'MIM (mse)', 'scratch'}, arms
    assert len(res['runs']) == 2 * 3, 'three seeds per arm'
    for row in res['runs']:
        for k in ('syn_epe', 'syn_bad2', 'real_epe', 'real_bad2'): assert math.isfinite(row[k]), (row, k)
    assert '| MIM (mse) |' in res['table'] and '| scratch |' in res['table'] and '±' in res['table']
    assert 'spread' in res['summary'][0]
    assert '| *constant map (no matching)* |' in res['table'] and all(math.isfinite(v) for v in res['baseline'].values())
    assert any('Against no matching' in line for line in res['summary'])
    assert math.isfinite(res['cpu_seconds']) and res['cpu_seconds'] > 0 and res['threads'] >= 1
    # what the reader sees: the outputs of the executed notebook, not its source
    outs = [o for c in json.loads((tmp_path / 'run.ipynb').read_text())['cells'] if c['cell_type'] == 'code' for o in c['outputs']]
    shown = [''.join(o.get('data', {}).get('text/markdown', '')) for o in outs]
    tables = [t for t in shown if '| MIM (mse) |' in t and '| scratch |' in t and 'synthetic EPE (px)' in t]
    assert tables == [res['table'].strip()] or tables == [res['table']], f'the table is not displayed: {shown}'
    assert any('is **larger**' in t or 'is **not larger**' in t for t in shown), 'no verdict displayed'
    assert any('min of CPU time' in t for t in shown), 'no run time displayed'
    assert any('Training EPE, second-to-last' in t for t in shown), "no 'what to try next' sentence"
    assert sum('image/jpeg' in o.get('data', {}) for o in outs) >= 3, 'figures missing (data, curves, maps)'
    assert (out / 'curves.png').is_file() and (out / 'disparity.png').is_file()
