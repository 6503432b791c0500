"""The layout shows the architecture: chapters in dependency order, each public name defined once, classes read in one place.

A numbered chapter imports only earlier chapters (letters sort after their number: `08a` after `08`); no public name
appears in two modules' `__all__`; no exported cell attaches a method to a class by assignment
(`ViTEncoder.forward = forward`); and no module exports a bare function named like a method (`forward`, `embed`).
"""
import ast, importlib, json, pkgutil, re
from pathlib import Path

import pytest

from conftest import REPO

NBS = REPO / 'nbs'


def chapters() -> dict[str, Path]:
    "Module name -> its numbered chapter notebook (from `#| default_exp`)."
    out = {}
    for nb in sorted(NBS.glob('[0-9]*.ipynb')):
        src = ''.join(json.loads(nb.read_text(encoding='utf-8'))['cells'][0]['source'])
        m = re.search(r'#\|\s*default_exp\s+(\S+)', src)
        if m: out[m[1]] = nb
    return out


def imported_modules(nb: Path) -> set[str]:
    "Every `stereomae.X` a notebook's code cells import (cell magics and shell lines dropped)."
    mods = set()
    for c in json.loads(nb.read_text(encoding='utf-8'))['cells']:
        if c['cell_type'] != 'code': continue
        code = '\n'.join(l for l in ''.join(c['source']).splitlines() if not re.match(r'\s*[%!]', l))
        try: tree = ast.parse(code)
        except SyntaxError: continue
        for n in ast.walk(tree):
            if isinstance(n, ast.ImportFrom) and n.module:
                if n.module.startswith('stereomae.'): mods.add(n.module.split('.')[1])
                elif n.module == 'stereomae': mods |= {a.name for a in n.names}
                elif n.level: mods.add(n.module.split('.')[0])
            elif isinstance(n, ast.Import):
                mods |= {a.name.split('.')[1] for a in n.names if a.name.startswith('stereomae.')}
    return mods


def test_chapters_import_only_earlier_chapters():
    chs = chapters()
    order = {m: nb.stem for m, nb in chs.items()}
    assert {'core', 'config', 'data', 'train', 'mae', 'disparity', 'builders', 'cli'} <= set(order), order
    bad = [f"{nb.name} imports stereomae.{m} ({order[m]})" for own, nb in chs.items()
           for m in imported_modules(nb) if m in order and m != own and order[m] > nb.stem]
    assert not bad, 'chapters import later chapters:\n' + '\n'.join(bad)


def _modules():
    import stereomae
    return {m.name: importlib.import_module(f'stereomae.{m.name}') for m in pkgutil.iter_modules(stereomae.__path__)
            if not m.name.startswith('_')}


def test_no_public_name_is_defined_twice():
    where = {}
    for name, mod in _modules().items():
        for n in getattr(mod, '__all__', []): where.setdefault(n, []).append(name)
    twice = {n: ms for n, ms in where.items() if len(ms) > 1}
    assert not twice, f'public names defined in several modules: {twice}'


def test_no_bare_method_names_exported():
    bare = {'forward', 'embed', 'load_weights', 'forward_features', 'forward_dense', 'decoder_forward'}
    found = {name: sorted(bare & set(getattr(mod, '__all__', []))) for name, mod in _modules().items()}
    assert not any(found.values()), found


@pytest.mark.parametrize('path', sorted((REPO / 'stereomae').glob('*.py')), ids=lambda p: p.name)
def test_no_methods_attached_by_assignment(path):
    "A class reads in one place: `Class.method = function` at module level is how the old chapters grew, and is gone."
    tree = ast.parse(path.read_text(encoding='utf-8'))
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    attached = [ast.unparse(t) for n in tree.body if isinstance(n, ast.Assign)
                for t in n.targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])
                if isinstance(e, ast.Attribute) and isinstance(e.value, ast.Name) and e.value.id in classes]
    assert not attached, f'{path.name} attaches methods by assignment: {attached}'
