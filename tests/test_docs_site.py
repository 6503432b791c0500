"""The docs site builds offline from the notebooks and works in a real browser (headless Chromium via Playwright):
pages load without console errors, the sidebar lists every chapter, search finds `CorrPyramid1D`, maths is typeset,
figures have a size, and no internal link or anchor is broken. Screenshots go to `test_artifacts/`."""
import functools, http.server, json, os, re, shutil, subprocess, sys, threading
from html.parser import HTMLParser
from pathlib import Path
import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / 'nbs' / '_site'))
import build as site  # noqa: E402

ARTIFACTS = REPO / 'test_artifacts'


def chromium() -> str:
    "Debian's Chromium, installed by this set-up when missing (root and the Debian mirror are needed then)."
    exe = shutil.which('chromium') or shutil.which('chromium-browser')
    if exe: return exe
    if os.geteuid() != 0: pytest.fail('Chromium is missing: install it with `sudo apt-get install chromium`')
    r = subprocess.run('apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium',
                       shell=True, capture_output=True, text=True, timeout=900)
    exe = shutil.which('chromium')
    assert exe, f'could not install Chromium from Debian:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}'
    return exe


@pytest.fixture(scope='module')
def html(tmp_path_factory):
    return site.build(tmp_path_factory.mktemp('site'))


@pytest.fixture(scope='module')
def server(html):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(html))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{httpd.server_address[1]}'
    httpd.shutdown()


@pytest.fixture(scope='module')
def browser():
    from playwright.sync_api import sync_playwright
    exe = chromium()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=['--no-sandbox', '--disable-gpu', '--no-first-run',
                              '--disable-background-networking', '--disable-component-update', '--disable-sync'])
        yield b
        b.close()


def chapter_pages() -> dict[str, str]:
    "Numbered chapter notebooks -> the page name nbdev gives them (`00_core` -> `core`)."
    return {p.stem: re.sub(r'^\d+[a-z]?_', '', p.stem) for p in sorted((REPO / 'nbs').glob('[0-9]*.ipynb'))}


def all_pages(html: Path) -> list[Path]:
    skip = {'genindex.html', 'search.html'}
    return [p for p in sorted(html.rglob('*.html')) if '_static' not in p.parts and '_sources' not in p.parts and p.name not in skip]


def _open(browser, url):
    page, errors = browser.new_page(viewport={'width': 1400, 'height': 1000}), []
    page.on('console', lambda m: errors.append(f'console {m.type}: {m.text}') if m.type == 'error' else None)
    page.on('pageerror', lambda e: errors.append(f'page error: {e}'))
    page.on('requestfailed', lambda r: errors.append(f'request failed: {r.url}'))
    page.on('response', lambda r: errors.append(f'HTTP {r.status}: {r.url}') if r.status >= 400 else None)
    page.goto(url, wait_until='load')
    return page, errors


def test_every_page_loads_without_errors_and_figures_have_size(browser, server, html):
    pages = all_pages(html)
    assert len(pages) >= len(chapter_pages()) + 1
    for p in pages:
        rel = p.relative_to(html).as_posix()
        page, errors = _open(browser, f'{server}/{rel}')
        page.wait_for_load_state('networkidle')
        sizes = page.eval_on_selector_all('article img', 'els => els.map(e => [e.getAttribute("src"), e.naturalWidth, e.naturalHeight])')
        page.close()
        assert not errors, f'{rel}: {errors}'
        assert all(w > 0 and h > 0 for _, w, h in sizes), f'{rel}: images without size {sizes}'


def test_sidebar_lists_every_chapter_in_order(browser, server):
    page, errors = _open(browser, f'{server}/index.html')
    hrefs = page.eval_on_selector_all('.sidebar-tree a.reference', 'els => els.map(e => e.getAttribute("href"))')
    page.close()
    names = [h.split('#')[0].removesuffix('.html') for h in hrefs]
    chapters = list(chapter_pages().values())
    missing = [c for c in chapters if c not in names]
    assert not missing, f'sidebar misses chapters {missing}; it has {names}'
    assert [n for n in names if n in chapters] == chapters, 'chapters are not in notebook order'


def test_search_finds_CorrPyramid1D(browser, server):
    if not (REPO / 'nbs' / '06_corr.ipynb').exists(): pytest.fail('06_corr.ipynb is missing')
    page, errors = _open(browser, f'{server}/search.html?q=CorrPyramid1D')
    page.wait_for_selector('#search-results ul.search li', timeout=30_000)
    hits = page.eval_on_selector_all('#search-results ul.search li a', 'els => els.map(e => e.getAttribute("href"))')
    page.close()
    assert any(h.startswith('corr.html') for h in hits), hits
    assert not errors, errors


def test_maths_is_typeset_and_screenshots(browser, server):
    ARTIFACTS.mkdir(exist_ok=True)
    page, errors = _open(browser, f'{server}/core.html')
    sizes = page.eval_on_selector_all('article math', 'els => els.map(e => e.getBoundingClientRect().width)')
    raw = page.evaluate('() => document.querySelector("article").innerText.includes("$x")')
    assert len(sizes) >= 5 and all(w > 0 for w in sizes), f'maths not typeset: {sizes}'
    assert not raw, 'raw TeX left on the page'
    page.screenshot(path=str(ARTIFACTS / 'docs_core.png'), full_page=False)
    page.close()
    assert not errors, errors
    page, errors = _open(browser, f'{server}/index.html')
    page.wait_for_load_state('networkidle')
    page.screenshot(path=str(ARTIFACTS / 'docs_front_page.png'), full_page=False)
    page.close()
    assert not errors, errors
    assert (ARTIFACTS / 'docs_front_page.png').stat().st_size > 10_000


class _Links(HTMLParser):
    def __init__(self):
        super().__init__(); self.hrefs, self.ids = [], set()
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get('id'): self.ids.add(a['id'])
        if tag == 'a' and a.get('href'): self.hrefs.append(a['href'])
        if tag == 'img' and a.get('src'): self.hrefs.append(a['src'])


def _parse(path: Path) -> _Links:
    p = _Links(); p.feed(path.read_text(encoding='utf-8')); return p


def test_no_internal_link_is_broken(html):
    parsed, broken = {}, []
    for page in all_pages(html):
        for href in _parse(page).hrefs:
            if re.match(r'^(https?:|mailto:|javascript:|data:)', href): continue
            target, _, anchor = href.partition('#')
            path = (page.parent / target).resolve() if target else page
            if target.endswith('/'): path = path / 'index.html'
            if not path.exists(): broken.append(f'{page.relative_to(html)} -> {href}'); continue
            if anchor and path.suffix == '.html':
                ids = parsed.setdefault(path, _parse(path).ids)
                if anchor not in ids: broken.append(f'{page.relative_to(html)} -> {href} (no such anchor)')
    assert not broken, '\n'.join(broken[:40])


def test_api_signatures_show_no_raw_html(html):
    "nbdev links names in argument comments; inside a code block such a link would show as text (`<a class=...><code>`)."
    raw = []
    for page in all_pages(html):
        for block in re.findall(r'<pre>(.*?)</pre>', page.read_text(encoding='utf-8'), re.S):
            text = re.sub(r'<[^>]+>', '', block)                       # what the reader sees
            raw += [f'{page.relative_to(html)}: {m}' for m in re.findall(r'&lt;(?:a|code|/a|/code)\b[^&]{0,60}', text)]
    assert not raw, f'{len(raw)} raw HTML tags shown in code blocks:\n' + '\n'.join(raw[:20])


def test_quarto_configuration_stays_valid():
    "nbdev_docs (with Quarto, where installed) reads nbs/_quarto.yml; it must parse and point at nbdev's files."
    import yaml
    q = yaml.safe_load((REPO / 'nbs' / '_quarto.yml').read_text())
    assert q['project']['type'] == 'website' and 'nbdev.yml' in q['metadata-files']
    assert (REPO / 'nbs' / 'styles.css').exists()
