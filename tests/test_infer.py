"""Evaluation end to end on the CPU: the real Middlebury sample and a held-out synthetic set, through `evaluate`.

The model is OpenCV's SGBM (`stereomae.infer.SGBM`, dev extra), so these tests need no trained network and still
check that a real matcher scores like one under the kit's protocols.
"""
import json, math
import numpy as np
import pytest
import torch

from stereomae.infer import SGBM, evaluate, predict_disparity, save_prediction, read_ply
from stereomae.metrics import MetricAccumulator

pytest.importorskip('cv2')


def motorcycle_samples():
    "The bundled Middlebury Motorcycle pair through `stereomae.data` when it exists, else scikit-image's copy."
    try:
        from stereomae.data import load_samples  # the data layer's reader of data_samples/
        samples = [s for s in load_samples() if 'otorcycle' in s['name']]
        if samples: return samples
    except (ImportError, AttributeError, FileNotFoundError): pass
    from skimage.data import stereo_motorcycle
    left, right, d = stereo_motorcycle()
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float() / 255
    return [dict(left=to_t(left), right=to_t(right), disp=torch.from_numpy(np.nan_to_num(d, posinf=0))[None].float(),
                 valid=torch.from_numpy(np.isfinite(d))[None], name='Motorcycle',
                 calib=dict(focal=994.978, baseline=193.001, doffs=31.086))]


def test_evaluate_middlebury_sample(tmp_path):
    samples = motorcycle_samples()
    res = evaluate(SGBM(num_disp=96), samples, ['raft_middlebury_F', 'middlebury_F'], out_dir=tmp_path, worst=1,
                   progress=False)
    rep = res.summary['report']
    # SGBM on this pair: about 1.5 px EPE and 10 % of pixels off by more than 2 px (a learned model does better)
    assert 0.3 < rep['EPE'] < 4 and 2 < rep['D1 (bad-2)'] < 25, rep
    assert res.others['middlebury_F']['report']['bad-2 all'] == pytest.approx(rep['D1 (bad-2)'])
    saved = json.loads((tmp_path / 'metrics.json').read_text())
    assert saved['summary']['images'] == len(samples) and len(saved['rows']) == len(samples)
    assert (tmp_path / 'rows.csv').read_text().count('\n') == len(samples) + 1
    assert any(p.name.startswith('worst1_') for p in tmp_path.iterdir())


def test_prediction_files_of_the_sample(tmp_path):
    s = motorcycle_samples()[0]
    pred = predict_disparity(SGBM(num_disp=96), s['left'], s['right'], lr_check=True)
    calib = s.get('calib') or dict(focal=994.978, baseline=193.001, doffs=31.086)
    files = save_prediction(tmp_path / 'moto', pred, s['left'], calib)
    cloud = read_ply(files['ply'])
    assert cloud['count'] == int(pred.valid.sum()) > 0.5 * pred.valid.numel()
    z = cloud['points'][:, 2]
    assert np.isfinite(z).all() and 500 < np.median(z) < 20000   # the motorcycle stands a few metres away (mm)


def test_evaluate_synthetic_heldout():
    synthetic = pytest.importorskip('stereomae.synthetic')
    ds = synthetic.SyntheticStereo(4, size=(96, 160), max_disp=24, seed=12345)   # seeds away from any training set
    res = evaluate(SGBM(num_disp=32, block_size=5), ds, ['eth3d', 'sceneflow'], progress=False)
    rows, rep = res.rows, res.summary['report']
    assert len(rows) == 4 and res.summary['nan_images']['bad1/noc'] == 0
    assert all(math.isfinite(r['epe/all']) for r in rows)
    # a real matcher on textured planes: most non-occluded pixels within 1 px, occluded ones worse
    assert rep['bad-1 noc'] <= rep['bad-1 all'] + 1e-6 and rep['bad-1 noc'] < 50, rep
    assert res.others['sceneflow']['report']['EPE'] < 5


def test_accumulator_matches_evaluate_rows():
    s = motorcycle_samples()[0]
    pred = predict_disparity(SGBM(num_disp=96), s['left'], s['right']).disp[0, 0]
    acc = MetricAccumulator('kitti2015'); row = acc.update(pred, s['disp'][0], s['valid'][0])
    assert row['d1/all'] <= row['bad3/all'] and math.isnan(row['d1/noc'])
