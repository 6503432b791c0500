"Benchmarks have one home: `tests/benchmarks/run.py` finds every `bench_*.py`, each with a `main()`."
import importlib.util, subprocess, sys
from conftest import REPO

BENCH = REPO / 'tests' / 'benchmarks'


def _load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def test_every_benchmark_has_a_main():
    files = sorted(BENCH.glob('bench_*.py'))
    assert BENCH / 'bench_matmul.py' in files
    sys.path.insert(0, str(BENCH))
    for f in files: assert callable(getattr(_load(f), 'main', None)), f'{f.name} has no main()'


def test_matmul_rate_is_measured():
    assert _load(BENCH / 'bench_matmul.py').matmul_gflops(64, repeats=2) > 0


def test_runner_prints_markdown_tables():
    r = subprocess.run([sys.executable, str(BENCH / 'run.py'), 'matmul'], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert '## bench_matmul' in r.stdout and '| fp32 CPU | 1024 |' in r.stdout
    r = subprocess.run([sys.executable, str(BENCH / 'run.py'), 'nosuch'], capture_output=True, text=True)
    assert r.returncode != 0 and 'no benchmark named' in r.stderr
