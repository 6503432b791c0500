"Shared pytest set-up: test flags (`--flags slow,gpu`), offline hubs, the venv's tools first on PATH."
import os, sys
from pathlib import Path
import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_FLAGS = ('slow', 'gpu', 'long')  # the same flags as `tst_flags` in settings.ini (long: stored runs of many minutes, re-run by hand)

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('MPLBACKEND', 'Agg')
os.environ['PATH'] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get('PATH', '')


def pytest_addoption(parser):
    parser.addoption('--flags', default='', help='comma-separated test flags to run as well: slow, gpu, long')
    parser.addoption('--only-flagged', action='store_true',
                     help='run only the tests and notebooks that hold something flagged with --flags (what the default run skips)')


def pytest_configure(config):
    for f in TEST_FLAGS: config.addinivalue_line('markers', f'{f}: only runs with --flags {f}')
    config.addinivalue_line('markers', 'flagged(*flags): a notebook test whose notebook holds cells with these flags')


def requested_flags(config) -> list[str]:
    flags = [f for f in config.getoption('--flags').split(',') if f]
    unknown = set(flags) - set(TEST_FLAGS)
    if unknown: raise pytest.UsageError(f'--flags got {sorted(unknown)}; known flags are {TEST_FLAGS}')
    return flags


def pytest_collection_modifyitems(config, items):
    flags = requested_flags(config)
    if config.getoption('--only-flagged'):
        def flagged(item):
            marks = {m.name for m in item.iter_markers()} | {a for m in item.iter_markers('flagged') for a in m.args}
            return bool(marks & set(flags))
        keep = [i for i in items if flagged(i)]
        config.hook.pytest_deselected(items=[i for i in items if not flagged(i)]); items[:] = keep
    for item in items:
        for f in TEST_FLAGS:
            if f in item.keywords and f not in flags:
                item.add_marker(pytest.mark.skip(reason=f'flagged {f}: run with --flags {f}'))


@pytest.fixture(scope='session')
def flags(request): return requested_flags(request.config)


@pytest.fixture(scope='session')
def repo(): return REPO
