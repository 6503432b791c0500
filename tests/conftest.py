"Shared pytest set-up: test flags (`--flags slow,gpu`), offline hubs, the venv's tools first on PATH."
import os, sys
from pathlib import Path
import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_FLAGS = ('slow', 'gpu')  # the same flags as `tst_flags` in settings.ini

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('MPLBACKEND', 'Agg')
os.environ['PATH'] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get('PATH', '')


def pytest_addoption(parser):
    parser.addoption('--flags', default='', help='comma-separated test flags to run as well: slow, gpu')


def pytest_configure(config):
    for f in TEST_FLAGS: config.addinivalue_line('markers', f'{f}: only runs with --flags {f}')


def requested_flags(config) -> list[str]:
    flags = [f for f in config.getoption('--flags').split(',') if f]
    unknown = set(flags) - set(TEST_FLAGS)
    if unknown: raise pytest.UsageError(f'--flags got {sorted(unknown)}; known flags are {TEST_FLAGS}')
    return flags


def pytest_collection_modifyitems(config, items):
    flags = requested_flags(config)
    for item in items:
        for f in TEST_FLAGS:
            if f in item.keywords and f not in flags:
                item.add_marker(pytest.mark.skip(reason=f'flagged {f}: run with --flags {f}'))


@pytest.fixture(scope='session')
def flags(request): return requested_flags(request.config)


@pytest.fixture(scope='session')
def repo(): return REPO
