#!/usr/bin/env python
"""Build the docs site from the notebooks, offline, with pip-installable tools only:

    .venv/bin/python nbs/_site/build.py [--out _site]      # then open _site/html/index.html

1. nbdev's own processing (`nbdev.serve.proc_nbs`, what `nbdev_docs` runs before Quarto): directives applied,
   hidden cells dropped, exported code replaced by `show_doc` API entries, backtick names linked.
2. Each processed notebook becomes a Sphinx page named like nbdev's output file (`00_core.ipynb` -> `core.html`),
   its front matter turned into the page title, API entries into real sections (so symbol links have targets).
3. Sphinx + myst-nb render the stored outputs (nothing executes) with the furo theme: sidebar in chapter order,
   client-side search; maths is turned into MathML at build time (latex2mathml), which browsers typeset natively,
   so pages need no maths script, font download or CDN.
Quarto's configuration (`nbs/_quarto.yml`) stays valid, so `nbdev_docs` also works where Quarto is installed.
"""
import argparse, json, posixpath, re, shutil, sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
GUIDES = ['getting_started', 'models', 'ssh', 'docker', 'datasets', 'benchmarks']   # sidebar order of the guide pages
SECTIONS = [('Guides', None), ('Chapters', None), ('Tutorials', 'tutorials'), ('Experiments', 'experiments')]


def slug(text: str) -> str:
    "The id docutils gives a section titled `text` (what symbol links must point to)."
    return re.sub(r'[^a-z0-9]+', '-', text.lower()).strip('-')


def _directives(src: str):
    "Split nbdev/Quarto `#| key: value` lines off the top of a code cell."
    lines, d = src.splitlines(), {}
    while lines and lines[0].startswith('#|'):
        k, _, v = lines.pop(0)[2:].strip().partition(':')
        d[k.strip()] = v.strip()
    return d, '\n'.join(lines)


_CODE = re.compile(r'(```.*?```|`[^`\n]*`)', re.S)
_FENCE = re.compile(r'(```.*?```)', re.S)


class PageConverter:
    "Turns processed notebooks into Sphinx pages for one build, and collects what it could not link or typeset."
    def __init__(self, doc_url: str, known: set[str]):
        self.doc_url = doc_url       # the published site's root URL, whose links become relative
        self.known = known           # the pages this build renders, relative to the site root, without .html
        self.dangling: list[str] = []     # links to pages no notebook renders (shown as plain text)
        self.math_errors: list[str] = []  # maths latex2mathml could not read (shown as code)
        self.page, self.folder = '', []   # the notebook being converted and its folder, relative to the site root

    def fix_markdown(self, md: str, depth: int) -> str:
        """Quarto-only syntax out, links to the published site made relative and pointed at docutils ids; inside code blocks
        (API signatures, whose argument comments nbdev links) a link becomes its text, since code shows no HTML."""
        parts = _FENCE.split(md)
        return ''.join(re.sub(r'\[([^\]\n]+)\]\((?:[a-z]+:[^)\s]*|[\w/.-]+\.(?:html|ipynb)(?:#[^)\s]*)?)\)', r'\1', p) if i % 2
                       else self._fix_prose(p, depth) for i, p in enumerate(parts))

    def _fix_prose(self, md: str, depth: int) -> str:
        md = re.sub(r'\{target="_blank"[^}]*\}', '', md)
        rel = '../' * depth

        def link(m):
            text, page, anchor = m[1], m[2], m[3]
            text = re.sub(r'`([^`]+)`', r'<code>\1</code>', text)
            return f'<a class="reference internal symbol-link" href="{rel}{page}' + (f'#{slug(anchor)}' if anchor else '') + f'">{text}</a>'
        md = re.sub(r'\[([^\]]+)\]\(' + re.escape(self.doc_url) + r'([\w/.-]+\.html)(?:#([^)\s]+))?\)', link, md)

        def local(m):  # [text](03_vit.ipynb#x) or [text](vit.html): the page nbdev names after the notebook
            text, path, anchor = m[1], m[2], m[4]
            parts = path.split('/')
            parts[-1] = re.sub(r'^\d+[a-z]?_', '', parts[-1])
            text = re.sub(r'`([^`]+)`', r'<code>\1</code>', text)
            target = '/'.join(parts)
            resolved = posixpath.normpath(posixpath.join(*self.folder, target))
            if self.known and resolved not in self.known:
                self.dangling.append(f'{self.page} -> {target}.html'); return text
            return f'<a class="reference internal" href="{target}.html' + (f'#{slug(anchor)}' if anchor else '') + f'">{text}</a>'
        return re.sub(r'\[([^\]]+)\]\((?![a-z]+:|#)([\w/.-]+?)\.(html|ipynb)(?:#([^)\s]+))?\)', local, md)

    def render_maths(self, md: str) -> str:
        "TeX between $..$ / $$..$$ (outside code) as MathML, which browsers typeset natively: no script, no web font."
        from latex2mathml.converter import convert as to_mathml
        def conv(tex, display):
            try: return to_mathml(tex.strip(), display='block' if display else 'inline')
            except Exception as e:
                self.math_errors.append(f'{self.page}: {tex[:60]!r} ({type(e).__name__})'); return f'<code>{tex}</code>'
        def text(part):
            part = re.sub(r'\$\$(.+?)\$\$', lambda m: f'\n\n<div class="math-display">{conv(m[1], True)}</div>\n\n', part, flags=re.S)
            return re.sub(r'(?<![\\$])\$(?![\s$])([^$\n]+?)(?<![\s\\])\$', lambda m: conv(m[1], False), part)
        return ''.join(p if i % 2 else text(p) for i, p in enumerate(_CODE.split(md)))

    def convert(self, nb_path: Path, depth: int) -> tuple[dict, str]:
        "A processed notebook as a Sphinx page; returns the notebook and its output name (without .html)."
        self.page, self.folder = nb_path.name, list(nb_path.parent.parts[-depth:]) if depth else []
        nb = json.loads(nb_path.read_text(encoding='utf-8'))
        cells, out_name = [], nb_path.stem
        for cell in nb['cells']:
            src = ''.join(cell['source'])
            if cell['cell_type'] == 'raw' and src.lstrip().startswith('---'):
                fm = yaml.safe_load(src.strip().strip('-')) or {}
                out_name = Path(fm.get('output-file', out_name + '.html')).stem
                head = f"# {fm.get('title', out_name)}"
                if fm.get("description"): head += f"\n\n> {fm['description']}"
                cells.append(dict(cell_type='markdown', metadata={}, source=head)); continue
            if cell['cell_type'] == 'markdown':
                if src.strip() == '<!-- WARNING: THIS FILE WAS AUTOGENERATED! DO NOT EDIT! -->': continue
                cells.append(dict(cell, source=self.render_maths(self.fix_markdown(src, depth)))); continue
            if cell['cell_type'] != 'code': continue
            d, code = _directives(src)
            if d.get('include') == 'false': continue
            outputs = cell.get('outputs', [])
            if d.get('echo') == 'false' and d.get('output') == 'asis':   # an API entry: make it part of the page
                md = ''.join(''.join(o.get('data', {}).get('text/markdown', '')) for o in outputs)
                md = re.sub(r'^---\s*\n', '', md.strip())
                if md: cells.append(dict(cell_type='markdown', metadata={}, source=self.fix_markdown(md, depth)))
                continue
            tags = list(cell.get('metadata', {}).get('tags', []))
            if d.get('echo') == 'false': tags.append('remove-input')
            if d.get('output') == 'false': tags.append('remove-output')
            for o in outputs:
                if 'text/markdown' in o.get('data', {}):
                    o['data']['text/markdown'] = self.fix_markdown(''.join(o['data']['text/markdown']), depth)
            cells.append(dict(cell_type='code', execution_count=None, metadata={'tags': tags} if tags else {},
                              source=code, outputs=outputs))
        nb['cells'] = [dict(c, id=f'c{i}') for i, c in enumerate(cells)]
        nb.setdefault('metadata', {})['language_info'] = {'name': 'python', 'pygments_lexer': 'ipython3'}
        return nb, out_name


def toctrees(pages: dict) -> str:
    "Hidden toctrees for the sidebar: guides, numbered chapters in order, tutorials, experiments."
    out = []
    for caption, folder in SECTIONS:
        names = sorted(p for p, (f, _) in pages.items() if f == folder and p != 'index')
        if caption == 'Guides':
            names = [pages_by_src for pages_by_src in names if not re.match(r'\d', pages[pages_by_src][1])]
            names.sort(key=lambda n: (GUIDES.index(n) if n in GUIDES else len(GUIDES), n))
        elif caption == 'Chapters':
            names = sorted((p for p, (f, s) in pages.items() if f is None and re.match(r'\d', s)), key=lambda p: pages[p][1])
        if names: out.append('```{toctree}\n:hidden:\n:caption: ' + caption + '\n\n' + '\n'.join(names) + '\n```')
    return '\n\n'.join(out)


def build(out: Path, proc: bool = True) -> Path:
    from nbdev.config import get_config
    from nbdev.serve import proc_nbs
    cfg = get_config(path=REPO)
    doc_url = cfg.doc_host.rstrip('/') + '/' + cfg.doc_baseurl.strip('/') + '/'
    if proc: proc_nbs(path=str(REPO / 'nbs'), n_workers=0, force=True)
    procdir = REPO / '_proc'
    src, html, static = out / 'src', out / 'html', out / 'static'
    for d in (src, html): shutil.rmtree(d, ignore_errors=True)
    src.mkdir(parents=True)
    pages = {}                                          # page path (no suffix) -> (folder, source stem)
    known = {'/'.join(nb.relative_to(procdir).parts[:-1] + (re.sub(r'^\d+[a-z]?_', '', nb.stem),))
             for nb in procdir.rglob('*.ipynb')}
    conv = PageConverter(doc_url, known)
    for nb in sorted(procdir.rglob('*.ipynb')):
        rel = nb.relative_to(procdir)
        depth = len(rel.parts) - 1
        page, name = conv.convert(nb, depth)
        folder = rel.parts[0] if depth else None
        key = f'{folder}/{name}' if folder else name
        if key in pages: raise SystemExit(f'two notebooks render to {key}.html: {pages[key][1]} and {nb.stem}')
        pages[key] = (folder, nb.stem)
        (src / key).parent.mkdir(parents=True, exist_ok=True)
        (src / f'{key}.ipynb').write_text(json.dumps(page, indent=1), encoding='utf-8')
    if 'index' not in pages: raise SystemExit(f'no index notebook in {procdir}')
    index = json.loads((src / 'index.ipynb').read_text())
    index['cells'].append(dict(cell_type='markdown', id='toc', metadata={}, source=toctrees(pages)))
    (src / 'index.ipynb').write_text(json.dumps(index, indent=1))
    if (procdir / 'images').exists(): shutil.copytree(procdir / 'images', src / 'images')
    static.mkdir(parents=True, exist_ok=True)
    (static / 'maths.css').write_text('.math-display { overflow-x: auto; margin: 1em 0; text-align: center; }\nmath { font-size: 1.08em; }\n')
    import os
    os.environ['STEREOMAE_SITE_STATIC'] = str(static)
    from sphinx.cmd.build import build_main
    rc = build_main(['-b', 'html', '-q', '-c', str(HERE), str(src), str(html)])
    if rc: raise SystemExit(f'sphinx failed with exit code {rc}')
    relink_symbols(html)
    for d in conv.dangling: print(f'warning: link to a page no notebook renders (shown as text): {d}')
    for d in conv.math_errors: print(f'warning: maths latex2mathml could not read (shown as code): {d}')
    return html


def relink_symbols(html: Path):
    "nbdev links every backticked name it knows; where a name has no API entry on its page, link the page itself."
    pages = {p: p.read_text(encoding='utf-8') for p in html.rglob('*.html') if '_static' not in p.parts}
    ids = {p: set(re.findall(r'\sid="([^"]+)"', t)) for p, t in pages.items()}
    for p, text in pages.items():
        def fix(m):
            target, anchor = m[2], m[3]
            dest = (p.parent / target).resolve() if target else p
            return m[0] if anchor in ids.get(dest, set()) else f'{m[1]}{target}"'
        new = re.sub(r'(<a class="reference internal symbol-link" href=")([^"#]*)#([^"]+)"', fix, text)
        if new != text: p.write_text(new, encoding='utf-8')


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', type=Path, default=REPO / '_site', help='output folder (the site is OUT/html)')
    ap.add_argument('--no-proc', action='store_true', help="reuse _proc/ from the last run of nbdev's processing")
    a = ap.parse_args()
    print(f'site written to {build(a.out.resolve(), not a.no_proc)}/index.html')
