"The tutorial `nbs/tutorials/mim_vs_scratch.ipynb` runs end to end with its tiny parameter set and prints a finite table."
import importlib.util, json, math, subprocess, sys
from pathlib import Path
import pytest

from conftest import REPO

NB = REPO / 'nbs' / 'tutorials' / 'mim_vs_scratch.ipynb'
TINY = REPO / 'nbs' / 'tutorials' / 'configs' / 'tiny.yaml'
NEEDS = ('stereomae.mae', 'stereomae.disparity')


def test_configs_parse():
    "Both YAML files set only parameters the notebook declares."
    import yaml
    nb = json.loads(NB.read_text())
    cell = next(c for c in nb['cells'] if 'parameters' in c.get('metadata', {}).get('tags', []))
    declared = {line.split('=')[0].strip() for line in ''.join(cell['source']).splitlines() if '=' in line and not line.startswith(' ')}
    for cfg in (TINY, TINY.parent / 'full.yaml'):
        keys = set(yaml.safe_load(cfg.read_text()))
        assert keys <= declared, f'{cfg.name} sets unknown parameters {sorted(keys - declared)}'


@pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in NEEDS), reason=f'needs {NEEDS}')
def test_tutorial_tiny(tmp_path):
    papermill = Path(sys.executable).parent / 'papermill'
    out = tmp_path / 'out'
    r = subprocess.run([str(papermill), str(NB), str(tmp_path / 'run.ipynb'), '-f', str(TINY), '-p', 'out_dir', str(out),
                        '-k', 'python3', '--no-progress-bar'], capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert r.returncode == 0, f'the tutorial failed:\n{r.stderr[-6000:]}'
    res = json.loads((out / 'results.json').read_text())
    arms = {row['arm'] for row in res['runs']}
    assert arms == {'MIM (mse)', 'scratch'}, arms
    assert len(res['runs']) == 2 * 3, 'three seeds per arm'
    for row in res['runs']:
        for k in ('syn_epe', 'syn_bad2', 'real_epe', 'real_bad2'): assert math.isfinite(row[k]), (row, k)
    assert '| MIM (mse) |' in res['table'] and '| scratch |' in res['table'] and '±' in res['table']
    assert 'spread' in res['summary'][0]
    text = (tmp_path / 'run.ipynb').read_text()
    assert 'synthetic EPE (px)' in text and ('is **larger**' in text or 'is **not larger**' in text)
    assert (out / 'curves.png').is_file() and (out / 'disparity.png').is_file()
