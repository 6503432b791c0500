"""Evaluation end to end on the CPU: the real Middlebury sample and a held-out synthetic set, through `evaluate`.

The model is OpenCV's SGBM (`stereomae.infer.SGBM`, dev extra), so these tests need no trained network and still
check that a real matcher scores like one under the kit's protocols.
"""
import json, math
from pathlib import Path
import numpy as np
import pytest
import torch

from stereomae.infer import SGBM, evaluate, predict_disparity, save_prediction, read_ply, sample_calib
from stereomae.metrics import MetricAccumulator

pytest.importorskip('cv2')


def motorcycle_samples():
    "The bundled Middlebury Motorcycle pair (data_samples/), read by the real Middlebury 2014 reader."
    from stereomae.data import sample_dataset
    return [sample_dataset('motorcycle')[0]]


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
    files = save_prediction(tmp_path / 'moto', pred, s['left'], sample_calib(s), depth_unit='mm')   # the sample's calib.txt
    cloud = read_ply(files['ply'])
    assert cloud['count'] == int(pred.valid.sum()) > 0.5 * pred.valid.numel()
    z = cloud['points'][:, 2]
    assert np.isfinite(z).all() and 500 < np.median(z) < 20000   # the motorcycle stands a few metres away (mm)
    assert Path(files['ply']).name == 'cloud_mm.ply' and 'units: mm (millimetres)' in cloud['comments']
    metres = save_prediction(tmp_path / 'moto-m', pred, s['left'], sample_calib(s), formats=('depth', 'ply'))
    assert np.allclose(read_ply(metres['ply'])['points'], cloud['points'] / 1000, rtol=1e-5)
    depth = np.load(metres['depth'])
    assert np.allclose(depth[pred.valid[0, 0].numpy() & np.isfinite(depth)], z / 1000, rtol=1e-5)   # the cloud's pixels, in metres


def test_masks_apply_to_every_format(tmp_path):
    "The left-right mask and a confidence threshold: NaN in .npy/.pfm/depth, 0 in the KITTI PNG, absent from the .ply, black in the PNG."
    from stereomae.io import read_pfm, read_disparity
    s = motorcycle_samples()[0]
    pred = predict_disparity(SGBM(num_disp=96), s['left'], s['right'], lr_check=True, confidence='lr', min_confidence=0.5)
    v = pred.valid[0, 0].numpy()
    assert 0.3 < v.mean() < 0.99 and (pred.confidence['lr'][0, 0].numpy()[v] >= 0.5).all()
    files = save_prediction(tmp_path / 'm', pred, s['left'], sample_calib(s), formats=('png', 'npy', 'pfm', 'kitti', 'depth', 'ply', 'confidence'))
    assert (np.isnan(np.load(files['npy'])) == ~v).all() and (np.isnan(read_pfm(files['pfm'])) == ~v).all()
    assert (np.isnan(np.load(files['depth'])) == ~v).all()
    kd, kv = read_disparity(files['kitti']); assert not kv[~v].any()
    assert read_ply(files['ply'])['count'] == v.sum()
    c = np.load(files['confidence_lr']); assert c.shape == v.shape and 0 <= c.min() and c.max() <= 1
    assert (plt_read(files['mask']) > 0.5).tolist() == v.tolist()


def plt_read(path):
    import matplotlib.pyplot as plt
    return plt.imread(path)


def test_updates_confidence_of_a_disparity_model():
    "The 'updates' confidence of a real DisparityModel (random weights: only the plumbing): in [0, 1], tiled like the disparity."
    from stereomae.disparity import DisparityModel
    torch.manual_seed(0)
    m = DisparityModel(backbone='cnn', hidden_dims=(16,), shared_backbone=True, n_downsample=3, n_gru_layers=2)
    x, y = torch.rand(1, 3, 64, 160), torch.rand(1, 3, 64, 160)
    whole = predict_disparity(m, x, y, iters=5, confidence=['updates', 'lr'])
    c = whole.confidence['updates']
    assert c.shape == (1, 1, 64, 160) and 0 <= c.min() and c.max() <= 1 and list(whole.confidence) == ['updates', 'lr']
    tiled = predict_disparity(m, x, y, iters=5, confidence='updates', tile=(64, 96), overlap=(0, 64), max_disp=32)
    assert tiled.tiles == 3 and tiled.confidence['updates'].shape == c.shape   # tiles at x = 0, 32, 64


def test_evaluate_synthetic_heldout():
    from stereomae import synthetic
    ds = synthetic.SyntheticStereo(4, size=(96, 160), max_disp=24, seed=12345)   # seeds away from any training set
    res = evaluate(SGBM(num_disp=32, block_size=5), ds, ['eth3d', 'sceneflow'], progress=False)
    rows, rep = res.rows, res.summary['report']
    assert len(rows) == 4 and res.summary['nan_images']['bad1/noc'] == 0
    assert all(math.isfinite(r['epe/all']) for r in rows)
    # a real matcher on textured planes: most non-occluded pixels within 1 px, occluded ones worse
    assert rep['bad-1 noc'] <= rep['bad-1 all'] + 1e-6 and rep['bad-1 noc'] < 50, rep
    assert res.others['sceneflow']['report']['EPE'] < 5


def test_depth_protocol_reads_the_samples_calib():
    "SCARED-style depth metrics on the Middlebury sample: the calibration comes from its calib.txt."
    s = motorcycle_samples()[0]
    res = evaluate(SGBM(num_disp=96), [s], 'scared', progress=False)
    mae = res.summary['report']['MAE (mm)']
    assert 5 < mae < 500, res.summary['report']   # SGBM at a few metres: errors of centimetres to decimetres


def test_accumulator_matches_evaluate_rows():
    s = motorcycle_samples()[0]
    pred = predict_disparity(SGBM(num_disp=96), s['left'], s['right']).disp[0, 0]
    acc = MetricAccumulator('kitti2015'); row = acc.update(pred, s['disp'][0], s['valid'][0])
    assert row['d1/all'] <= row['bad3/all'] and math.isnan(row['d1/noc'])


def test_left_right_check_on_exact_ground_truth():
    "On exact left and right ground truth, the left-right check keeps the non-occluded pixels and drops most occluded ones."
    from stereomae import synthetic
    from stereomae.infer import lr_consistency
    s = synthetic.SyntheticStereo(1, size=(96, 160), max_disp=24, seed=7, right_disp=True)[0]
    ok = lr_consistency(s['disp'][None], s['disp_right'][None], thresh=1.0)[0]
    nocc, occ = s['nocc'] & s['valid'], ~s['nocc'] & s['valid']
    assert ok[nocc].float().mean() > 0.97                       # visible pixels agree (up to interpolation at edges)
    assert occ.sum() == 0 or ok[occ].float().mean() < 0.5       # occluded ones land on a nearer surface and disagree


def test_evaluation_notebook_runs(tmp_path, repo):
    "The papermill experiment `nbs/experiments/evaluate.ipynb` with small parameters; an unknown protocol is a clear error."
    papermill = pytest.importorskip('papermill')
    nb = repo / 'nbs' / 'experiments' / 'evaluate.ipynb'
    params = dict(dataset='synthetic', limit=2, protocols='eth3d,sceneflow', model_options=dict(num_disp=48), worst=1, out_dir=str(tmp_path / 'eval'))
    papermill.execute_notebook(str(nb), str(tmp_path / 'out.ipynb'), parameters=params, progress_bar=False, cwd=str(tmp_path))
    saved = json.loads((tmp_path / 'eval' / 'metrics.json').read_text())
    assert saved['summary']['protocol'] == 'eth3d' and 'sceneflow' in saved['others'] and len(saved['rows']) == 2
    with pytest.raises(papermill.PapermillExecutionError, match='registered'):
        papermill.execute_notebook(str(nb), str(tmp_path / 'bad.ipynb'), parameters=dict(protocols='kitti'),
                                   progress_bar=False, cwd=str(tmp_path))


def test_a_cli_trained_cnn_model_evaluates_on_the_sample(tmp_path):
    "`backbone: cnn` through the command-line job, its run directory loaded by `load_model`, scored by `evaluate`."
    from stereomae import builders
    params = dict(name='cnn', runs_dir=str(tmp_path), backbone='cnn', steps=2, batch_size=2, num_workers=0, crop=[64, 128],
                  train_iters=2, hidden_dims=[16, 16, 16], feature_dim=32, shared_backbone=True, n_downsample=3,
                  n_gru_layers=2, valid_data=[], progress=False, log_every=1,
                  train_data=[dict(dataset='synthetic', n=4, size=[96, 160], max_disp=16)])
    builders.finetune_job(params)
    model = builders.load_model(tmp_path / 'finetune' / 'cnn')
    assert model.cfg.backbone == 'cnn' and not model.training
    res = evaluate(model, motorcycle_samples(), 'raft_middlebury_Q', iters=2, progress=False, keep=True)
    assert math.isfinite(res.summary['report']['EPE']) and res.predictions[0].shape == (500, 741)
    weights = tmp_path / 'finetune' / 'cnn' / 'weights.safetensors'       # continuing from it restores the shared norms too
    builders.finetune_job({k: v for k, v in params.items() if k not in builders.DisparityConfig.__dataclass_fields__}
                          | dict(name='cnn2', init='finetuned', init_from=str(weights), steps=1))
    for bad, msg in [(dict(init='mim', init_from=str(tmp_path / 'x.safetensors')), "init='mim' loads ViT weights"),
                     (dict(backbone='resnet'), "backbone='resnet'")]:
        with pytest.raises(builders.ConfigError, match=msg): builders.finetune_job(params | bad)
