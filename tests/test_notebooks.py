"""Every library notebook is a test, run by nbdev's own runner; the package and the notebooks must be in sync.

Experiment and tutorial notebooks (`nbs/experiments`, `nbs/tutorials`) are papermill notebooks with their own tests.
"""
import filecmp, shutil, subprocess, sys
from pathlib import Path
import pytest

from conftest import REPO, TEST_FLAGS

NBS = REPO / 'nbs'
PAPERMILL_DIRS = ('experiments', 'tutorials')


def library_notebooks() -> list[Path]:
    "Chapter notebooks in the order nbdev runs them (names starting with `_` or `.` are skipped, as nbdev does)."
    out = []
    for p in sorted(NBS.rglob('*.ipynb')):
        parts = p.relative_to(NBS).parts
        if any(s.startswith(('_', '.')) for s in parts) or parts[0] in PAPERMILL_DIRS: continue
        out.append(p)
    return out


_RUNNER = """
import sys
from nbdev.test import test_nb
from pathlib import Path
ok, secs = test_nb(Path(sys.argv[1]), skip_flags=sys.argv[2].split(',') if sys.argv[2] else [],
                   force_flags=sys.argv[3].split(',') if sys.argv[3] else [], do_print=False, showerr=True)
sys.exit(0 if ok else 1)
"""


def cell_flags(nb: Path) -> list[str]:
    "The test flags (`#| slow`, `#| gpu`, `#| long`) of a notebook's cells."
    import json, re
    srcs = [''.join(c['source']) for c in json.loads(nb.read_text(encoding='utf-8'))['cells'] if c['cell_type'] == 'code']
    return sorted({f for s in srcs for f in TEST_FLAGS if re.search(rf'^#\|\s*{f}\b', s, re.M)})


@pytest.mark.parametrize('nb', [pytest.param(p, marks=pytest.mark.flagged(*cell_flags(p))) for p in library_notebooks()],
                         ids=lambda p: str(p.relative_to(NBS)))
def test_notebook(nb, flags):
    "Run one notebook with nbdev's runner in a fresh process, as `nbdev_test` does (no state leaks between chapters)."
    skip = [f for f in TEST_FLAGS if f not in flags]
    r = subprocess.run([sys.executable, '-c', _RUNNER, str(nb), ','.join(skip), ','.join(flags)],
                       capture_output=True, text=True, cwd=nb.parent)
    assert r.returncode == 0, f'{nb.name} failed:\n{r.stderr[-6000:]}'


def _copy_project(dst: Path):
    for name in ('settings.ini', 'setup.py', 'README.md'): shutil.copy(REPO / name, dst / name)
    shutil.copytree(NBS, dst / 'nbs', ignore=shutil.ignore_patterns('.ipynb_checkpoints', '_*'))
    shutil.copytree(REPO / 'stereomae', dst / 'stereomae', ignore=shutil.ignore_patterns('__pycache__'))


def _diff(a: Path, b: Path, pattern: str) -> list[str]:
    fa = {p.relative_to(a) for p in a.rglob(pattern) if '__pycache__' not in p.parts and '.ipynb_checkpoints' not in p.parts}
    fb = {p.relative_to(b) for p in b.rglob(pattern) if '__pycache__' not in p.parts and '.ipynb_checkpoints' not in p.parts}
    changed = [str(f) for f in fa & fb if not filecmp.cmp(a / f, b / f, shallow=False)]
    return sorted(changed + [f'only committed: {f}' for f in fa - fb] + [f'only exported: {f}' for f in fb - fa])


def _nbdev(cmd: str, cwd: Path):
    exe = Path(sys.executable).parent / cmd
    r = subprocess.run([str(exe)], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f'{cmd} failed:\n{r.stdout}\n{r.stderr}'


def test_export_leaves_no_diff(tmp_path):
    "`nbdev_export` run on the notebooks reproduces the committed package exactly."
    _copy_project(tmp_path)
    _nbdev('nbdev_export', tmp_path)
    diff = _diff(REPO / 'stereomae', tmp_path / 'stereomae', '*.py')
    assert not diff, f'the package differs from the notebooks (run nbdev_export and commit): {diff}'


def test_notebooks_are_clean(tmp_path):
    "`nbdev_clean` changes no notebook: no execution counts, ids or stray metadata (papermill's tags are kept)."
    _copy_project(tmp_path)
    _nbdev('nbdev_clean', tmp_path)
    diff = _diff(NBS, tmp_path / 'nbs', '*.ipynb')
    assert not diff, f'notebooks are not clean (run nbdev_clean and commit): {diff}'


def all_notebooks() -> list[Path]:
    return [p for p in sorted(NBS.rglob('*.ipynb'))
            if not any(s.startswith(('_', '.')) for s in p.relative_to(NBS).parts)]


@pytest.mark.parametrize('nb', all_notebooks(), ids=lambda p: str(p.relative_to(NBS)))
def test_first_markdown_cell_is_title_and_subtitle(nb):
    """nbdev turns a notebook's first markdown cell into the page's title and description and drops the rest of that
    cell from the docs, so it must hold only `# Title` and `> one-line subtitle`; the prose starts in the next cell."""
    import json, re
    cells = json.loads(nb.read_text(encoding='utf-8'))['cells']
    first = next((''.join(c['source']).strip() for c in cells if c['cell_type'] == 'markdown'), '')
    assert re.fullmatch(r'# [^\n]+\n\n> [^\n]+', first), \
        f'{nb.name}: the first markdown cell must be exactly "# Title\\n\\n> subtitle" (nbdev drops anything else ' \
        f'in it from the docs); move the rest into the next cell. It is:\n{first[:300]}'


@pytest.mark.parametrize('nb', all_notebooks(), ids=lambda p: str(p.relative_to(NBS)))
def test_cells_that_import_hold_only_imports(nb):
    """nbdev's docs processing executes every cell that imports anything (to render the API entries), so a cell with an
    import must hold only imports and definitions; otherwise building the docs runs (and can break on) demo code."""
    import ast, json, re
    ok = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    bad = []
    for c in json.loads(nb.read_text(encoding='utf-8'))['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] != 'code' or re.search(r'^#\|\s*(export|exporti|exports)\b', src, re.M): continue
        if 'nbdev_export()' in src or re.search(r'^#\|\s*eval:\s*false', src, re.M): continue  # nbdev skips these too
        code = '\n'.join('' if re.match(r'\s*[%!]', l) else l for l in src.splitlines())
        try: tree = ast.parse(code)
        except SyntaxError: continue
        if any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(tree)) and not all(isinstance(n, ok) for n in tree.body):
            bad.append(src[:200])
    assert not bad, (f'{nb.name}: cells mixing imports with other code (move the imports to a cell of their own; '
                     '/work/nbtools/split_imports.py does it):\n---\n' + '\n---\n'.join(bad))
