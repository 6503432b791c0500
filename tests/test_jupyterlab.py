"""JupyterLab smoke test: the server starts on loopback with a token, refuses requests without it, and a chapter
notebook executes cell by cell in the kit's kernel through the server's own REST and websocket API."""
import json, os, secrets, signal, socket, subprocess, sys, time, uuid
from pathlib import Path
import pytest, requests, websocket

from conftest import REPO

CHAPTER = '00_core.ipynb'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    port, token = _free_port(), secrets.token_hex(16)
    log = tmp_path_factory.mktemp('jupyter') / 'server.log'
    cmd = [str(Path(sys.executable).parent / 'jupyter'), 'lab', '--no-browser', '--ip=127.0.0.1', f'--port={port}',
           f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={REPO / "nbs"}',
           f'--ServerApp.runtime_dir={log.parent}']
    if hasattr(os, 'geteuid') and os.geteuid() == 0: cmd.append('--allow-root')
    with open(log, 'w') as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    base = f'http://127.0.0.1:{port}'
    try:
        for _ in range(120):
            if proc.poll() is not None: pytest.fail(f'jupyter lab exited early:\n{log.read_text()}')
            try:
                if requests.get(f'{base}/api/status', params=dict(token=token), timeout=2).ok: break
            except requests.ConnectionError: pass
            time.sleep(0.5)
        else: pytest.fail(f'jupyter lab did not answer in 60 s:\n{log.read_text()}')
        yield dict(base=base, token=token, port=port, proc=proc, log=log)
    finally:
        os.kill(proc.pid, signal.SIGTERM)          # stopped by its own PID
        try: proc.wait(timeout=30)
        except subprocess.TimeoutExpired: os.kill(proc.pid, signal.SIGKILL); proc.wait()
        assert proc.poll() is not None


def test_token_is_required(server):
    r = requests.get(f"{server['base']}/api/contents", timeout=10)
    assert r.status_code in (401, 403)
    assert requests.get(f"{server['base']}/api/contents", params=dict(token=server['token']), timeout=10).ok
    lab = requests.get(f"{server['base']}/lab", params=dict(token=server['token']), timeout=10)
    assert lab.ok and 'JupyterLab' in lab.text


def _execute(ws, session: str, code: str, timeout: float = 300) -> dict:
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps(dict(channel='shell', buffers=[], metadata={}, parent_header={},
                            header=dict(msg_id=msg_id, username='test', session=session, msg_type='execute_request', version='5.3'),
                            content=dict(code=code, silent=False, store_history=True, user_expressions={},
                                         allow_stdin=False, stop_on_error=True))))
    errors, deadline = [], time.time() + timeout
    while time.time() < deadline:
        m = json.loads(ws.recv())
        if m.get('parent_header', {}).get('msg_id') != msg_id: continue
        if m['msg_type'] == 'error': errors.append('\n'.join(m['content']['traceback']))
        if m['msg_type'] == 'execute_reply': return dict(status=m['content']['status'], errors=errors)
    raise TimeoutError(f'no reply in {timeout} s for:\n{code[:200]}')


def test_chapter_runs_in_the_kits_kernel(server):
    base, tok = server['base'], server['token']
    specs = requests.get(f'{base}/api/kernelspecs', params=dict(token=tok), timeout=10).json()
    assert 'python3' in specs['kernelspecs']
    r = requests.post(f'{base}/api/sessions', params=dict(token=tok), timeout=60,
                      json=dict(path=CHAPTER, type='notebook', name=CHAPTER, kernel=dict(name='python3')))
    assert r.status_code == 201, r.text
    kernel = r.json()['kernel']['id']
    ws = websocket.create_connection(f"ws://127.0.0.1:{server['port']}/api/kernels/{kernel}/channels?token={tok}", timeout=300)
    try:
        session = uuid.uuid4().hex
        res = _execute(ws, session, 'import sys, stereomae; print(sys.executable, stereomae.__file__)')
        assert res['status'] == 'ok', res
        nb = json.loads((REPO / 'nbs' / CHAPTER).read_text())
        cells = [''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'code']
        cells = [c for c in cells if '#| slow' not in c and '#| gpu' not in c and '#| eval: false' not in c]
        for code in cells:
            res = _execute(ws, session, code)
            assert res['status'] == 'ok', f'cell failed in JupyterLab:\n{code}\n' + '\n'.join(res['errors'])
    finally:
        ws.close()
        requests.delete(f'{base}/api/kernels/{kernel}', params=dict(token=tok), timeout=30)
