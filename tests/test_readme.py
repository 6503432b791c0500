"""README.md is the front page notebook `nbs/index.ipynb` rendered as markdown, and CI runs README's two commands.

Regenerate the README after editing the front page: `.venv/bin/python tests/test_readme.py --write`.
"""
import json, re, sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def render_readme(index=REPO / 'nbs' / 'index.ipynb') -> str:
    "The front page as GitHub markdown: markdown cells as they are, image and notebook paths made relative to the repo root."
    nb = json.loads(Path(index).read_text(encoding='utf-8'))
    parts = []
    for cell in nb['cells']:
        src = ''.join(cell['source']).strip()
        if cell['cell_type'] == 'markdown' and src: parts.append(src)
    text = '\n\n'.join(parts) + '\n'
    text = re.sub(r'\]\((images/[^)]+)\)', r'](nbs/\1)', text)
    text = re.sub(r'\]\(((?!https?:|/|#|nbs/)[^)]+\.ipynb)\)', r'](nbs/\1)', text)  # chapter links, relative to nbs/
    return '<!-- generated from nbs/index.ipynb by tests/test_readme.py --write; edit the notebook -->\n' + text


def setup_commands(readme: str) -> list[str]:
    "The two commands of the first bash block of the README."
    block = re.search(r'```bash\n(.*?)```', readme, re.S)[1]
    return [l.strip() for l in block.splitlines() if l.strip() and not l.strip().startswith('#')]


def test_readme_is_the_front_page():
    assert (REPO / 'README.md').read_text(encoding='utf-8') == render_readme(), \
        'README.md differs from nbs/index.ipynb: run `.venv/bin/python tests/test_readme.py --write`'


def test_readme_starts_with_two_commands_and_ci_runs_them():
    cmds = setup_commands((REPO / 'README.md').read_text(encoding='utf-8'))
    assert len(cmds) == 2, cmds
    assert 'venv' in cmds[0] and 'pip install' in cmds[0] and '[dev]' in cmds[0]
    assert 'pytest' in cmds[1]
    ci = [l.strip() for l in (REPO / '.ci' / 'run').read_text().splitlines()]
    assert cmds[0] in ci and cmds[1] in ci, '.ci/run must run the README commands verbatim'


def section_commands(readme: str, heading: str) -> list[str]:
    "The commands of the first bash block under the section `## heading`."
    section = readme[readme.index(f'## {heading}\n'):]
    return setup_commands(section)


def test_the_cpu_section_runs_as_written(tmp_path):
    "The first command of 'Get a disparity map now, on a CPU', verbatim from a folder that has the repository's data_samples/."
    import os, subprocess
    cmds = section_commands((REPO / 'README.md').read_text(encoding='utf-8'), 'Get a disparity map now, on a CPU')
    assert cmds and all(c.startswith('.venv/bin/stereomae predict') for c in cmds), cmds
    (tmp_path / 'data_samples').symlink_to(REPO / 'data_samples')
    env = {**os.environ, 'PYTHONPATH': str(REPO), 'OMP_NUM_THREADS': '1', 'MPLBACKEND': 'Agg'}
    for c in cmds:
        r = subprocess.run(c.replace('.venv/bin/stereomae', f'{sys.executable} -m stereomae.cli', 1), shell=True, cwd=tmp_path,
                           capture_output=True, text=True, env=env, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        assert 'model: SGBM' in r.stdout and 'Motorcycle-perfect: 741x500' in r.stdout, r.stdout
    written = sorted(p.name for p in (tmp_path / 'predictions' / 'Motorcycle-perfect').iterdir())
    assert written == ['cloud_m.ply', 'confidence_lr.npy', 'confidence_lr.png', 'depth_m.npy', 'disp.npy', 'disp.png'], written


def test_readme_images_exist():
    for path in re.findall(r'!\[[^\]]*\]\(([^)]+)\)', render_readme()):
        assert (REPO / path).is_file(), f'README shows {path}, which does not exist'


if __name__ == '__main__' and '--write' in sys.argv:
    (REPO / 'README.md').write_text(render_readme(), encoding='utf-8')
    print('wrote README.md')
