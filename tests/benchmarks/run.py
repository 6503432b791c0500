"""Run every benchmark and print its tables as markdown: `.venv/bin/python tests/benchmarks/run.py [name ...]`.

Each `bench_<topic>.py` beside this file has a `main()` that prints its own markdown tables. Speed and memory
targets are checked here, never in timed unit tests: the numbers are ratios measured side by side in one run.
"""
import importlib.util, sys, time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def benchmarks(names=()):
    found = sorted(HERE.glob('bench_*.py'))
    if names:
        wanted = {n.removeprefix('bench_').removesuffix('.py') for n in names}
        unknown = wanted - {p.stem.removeprefix('bench_') for p in found}
        if unknown: raise SystemExit(f'no benchmark named {sorted(unknown)}; have {[p.stem for p in found]}')
        found = [p for p in found if p.stem.removeprefix('bench_') in wanted]
    return found


def run(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    print(f'\n## {path.stem}\n', flush=True)
    t0 = time.perf_counter(); mod.main()
    print(f'\n_{path.stem} took {time.perf_counter() - t0:.1f} s_', flush=True)


if __name__ == '__main__':
    sys.path.insert(0, str(HERE))
    for p in benchmarks(sys.argv[1:]): run(p)
