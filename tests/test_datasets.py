"""Every dataset class of `stereomae.data` on a tiny fake tree written here in the dataset's published layout.

Each fake pair is a random texture whose right view is the left shifted by `D` pixels, so the ground truth read back
must equal `D` wherever it is valid (and warping the right view by it must reproduce the left view).
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stereomae.core import warp_right_to_left
from stereomae.data import (SceneFlow, KITTI, MiddEval3, Middlebury2014, ETH3D, SintelStereo, FallingThings, TartanAir,
                            SCARED, Cityscapes, KITTIRaw, StereoFolder, StereoPairs, mix, collate_stereo, make_loader,
                            sample_dataset)
from stereomae.io import write_image, write_pfm, write_kitti_disparity, write_sintel_disparity, write_calib

H, W, D = 16, 24, 2.0
KEYS = {'left', 'right', 'paths', 'name'}
GT_KEYS = KEYS | {'disp', 'valid'}


def pair(seed=0):
    img = np.random.default_rng(seed).integers(0, 255, (H, W + int(D), 3), dtype=np.uint8)
    return img[:, :W], img[:, int(D):]  # right(x - D) = left(x)


def write_pair(left_path, right_path, seed=0):
    l, r = pair(seed)
    write_image(left_path, l); write_image(right_path, r)


def check_sample(s, gt=True, nocc=False):
    assert set(s) == (GT_KEYS | ({'nocc'} if nocc else set()) if gt else KEYS), set(s)
    assert s['left'].shape == s['right'].shape == (3, H, W) and s['left'].dtype == torch.float32
    assert 0 <= s['left'].min() and s['left'].max() <= 1
    for k in ('left', 'right', 'disp'): assert isinstance(s['paths'][k], str)
    assert isinstance(s['name'], str) and s['name']
    if gt:
        assert s['disp'].shape == s['valid'].shape == (1, H, W) and s['valid'].dtype == torch.bool
        assert s['valid'].any() and torch.allclose(s['disp'][s['valid']], torch.tensor(D), atol=1e-2)
        assert (s['disp'][~s['valid']] == 0).all() and s['paths']['disp']
        w = warp_right_to_left(s['right'][None], s['disp'][None])[0]
        ok = s['valid'][0].clone(); ok[:, :int(D) + 1] = False
        assert (w - s['left']).abs()[:, ok].max() < 1e-4
        if nocc: assert s['nocc'].dtype == torch.bool and (s['nocc'] <= s['valid']).all()
    else: assert s['paths']['disp'] == ''


# ---------------------------------------------------------------- SceneFlow and KITTI (also in the chapter)

def test_sceneflow_driving_final(tmp_path):
    base = tmp_path/'Driving'
    for p in ('clean', 'final'):
        d = base/f'frames_{p}pass'/'35mm_focallength'/'scene_backwards'/'slow'
        write_pair(d/'left'/'0001.png', d/'right'/'0001.png')
    write_pfm(base/'disparity'/'35mm_focallength'/'scene_backwards'/'slow'/'left'/'0001.pfm', np.full((H, W), D))
    ds = SceneFlow(tmp_path, 'driving', passes=('clean', 'final'))
    assert len(ds) == 2 and ds[1]['name'] == 'driving/final/35mm_focallength/scene_backwards/slow/0001'
    check_sample(ds[1])
    with pytest.raises(ValueError, match="subset 'flying'"): SceneFlow(tmp_path, 'flying')
    with pytest.raises(ValueError, match="split='val'"): SceneFlow(tmp_path, 'driving', split='val')


def test_kitti2012(tmp_path):
    for i in range(2):
        write_pair(tmp_path/'training'/'colored_0'/f'00000{i}_10.png', tmp_path/'training'/'colored_1'/f'00000{i}_10.png', i)
        d = np.full((H, W), D); d[0] = 0
        write_kitti_disparity(tmp_path/'training'/'disp_occ'/f'00000{i}_10.png', d)
        d[:, -3:] = 0; write_kitti_disparity(tmp_path/'training'/'disp_noc'/f'00000{i}_10.png', d)
    write_pair(tmp_path/'training'/'colored_0'/'000000_11.png', tmp_path/'training'/'colored_1'/'000000_11.png')  # not frame 10
    write_pair(tmp_path/'testing'/'colored_0'/'000000_10.png', tmp_path/'testing'/'colored_1'/'000000_10.png')
    ds = KITTI(tmp_path, 2012)
    assert len(ds) == 2 and ds[0]['name'] == 'kitti2012/000000_10'
    s = ds[0]; check_sample(s, nocc=True)
    assert not s['valid'][0, 0].any() and s['nocc'].sum() == (H - 1) * (W - 3)
    check_sample(KITTI(tmp_path, 2012, 'testing')[0], gt=False)
    with pytest.raises(ValueError, match='year=2013'): KITTI(tmp_path, 2013)


# ---------------------------------------------------------------- Middlebury and ETH3D

def write_mb_scene(folder, gt_name, variants=('',), seed=0):
    l, r = pair(seed)
    write_image(folder/'im0.png', l)
    for v in variants: write_image(folder/f'im1{v}.png', np.clip(r.astype(int) + (5 if v else 0), 0, 255).astype(np.uint8))
    if gt_name:
        d = np.full((H, W), D, np.float32); d[-1] = np.inf; write_pfm(folder/gt_name, d)
    write_calib(folder/'calib.txt', focal=100, cx=W / 2, cy=H / 2, doffs=1.5, baseline=160, width=W, height=H, ndisp=16)


def test_middeval3_all_resolutions_and_splits(tmp_path):
    mb = tmp_path/'MiddEval3'
    for res in 'FHQ':
        for scene in ('Adirondack', 'Jadeplant'):
            write_mb_scene(mb/f'training{res}'/scene, 'disp0GT.pfm')
            m = np.full((H, W), 255, np.uint8); m[:, :3] = 128; m[-1] = 0
            write_image(mb/f'training{res}'/scene/'mask0nocc.png', m)
        write_mb_scene(mb/f'test{res}'/'Australia', None)
    for root in (tmp_path, mb):  # the parent of MiddEval3/ or MiddEval3/ itself
        ds = MiddEval3(root, resolution='Q')
        assert len(ds) == 2 and ds[0]['name'] == 'middeval3/trainingQ/Adirondack'
    s = ds[1]; check_sample(s, nocc=True)
    assert not s['valid'][0, -1].any() and not s['nocc'][0, :, :3].any() and s['nocc'][0, :-1, 3:].all()
    check_sample(MiddEval3(tmp_path, 'test', 'H')[0], gt=False)
    with pytest.raises(ValueError, match="resolution='X'"): MiddEval3(tmp_path, resolution='X')
    (mb/'trainingF'/'Jadeplant'/'mask0nocc.png').unlink()
    with pytest.raises(FileNotFoundError, match='nocc file .*trainingF/Jadeplant/mask0nocc.png'): MiddEval3(tmp_path)


def test_middlebury2014_variants(tmp_path):
    for rect in ('perfect', 'imperfect'): write_mb_scene(tmp_path/f'Piano-{rect}', 'disp0.pfm', ('', 'E', 'L'))
    ds = Middlebury2014(tmp_path)
    assert len(ds) == 1 and ds.files[0].extra['calib'].name == 'calib.txt'
    check_sample(ds[0])
    e = Middlebury2014(tmp_path, variant='E', rectification='both')
    assert len(e) == 2 and e[1]['paths']['right'].endswith('Piano-imperfect/im1E.png')
    assert not torch.equal(e[0]['right'], ds[0]['right'])
    (tmp_path/'Piano-perfect'/'im1L.png').unlink()
    with pytest.raises(FileNotFoundError, match='right file .*Piano-perfect/im1L.png'): Middlebury2014(tmp_path, 'L')
    with pytest.raises(ValueError, match="variant='X'"): Middlebury2014(tmp_path, 'X')


def test_eth3d(tmp_path):
    for scene in ('delivery_area_1l', 'electro_1s'):
        write_mb_scene(tmp_path/'two_view_training'/scene, None)
        write_pfm(tmp_path/'two_view_training_gt'/scene/'disp0GT.pfm', np.full((H, W), D))
        write_image(tmp_path/'two_view_training_gt'/scene/'mask0nocc.png', np.full((H, W), 255, np.uint8))
    write_mb_scene(tmp_path/'two_view_test'/'lakeside_1l', None)
    ds = ETH3D(tmp_path)
    assert len(ds) == 2 and ds[1]['name'] == 'eth3d/electro_1s'
    check_sample(ds[1], nocc=True)
    check_sample(ETH3D(tmp_path, 'test')[0], gt=False)


# ---------------------------------------------------------------- Sintel, FallingThings, TartanAir

def test_sintel(tmp_path):
    tr = tmp_path/'training'
    for p in ('clean', 'final'): write_pair(tr/f'{p}_left'/'alley_1'/'frame_0001.png', tr/f'{p}_right'/'alley_1'/'frame_0001.png')
    write_sintel_disparity(tr/'disparities'/'alley_1'/'frame_0001.png', np.full((H, W), D))
    occ = np.zeros((H, W), np.uint8); occ[:, 5] = 255; write_image(tr/'occlusions'/'alley_1'/'frame_0001.png', occ)
    oof = np.zeros((H, W), np.uint8); oof[:, :2] = 255; write_image(tr/'outofframe'/'alley_1'/'frame_0001.png', oof)
    write_pair(tmp_path/'test'/'final_left'/'market_1'/'frame_0001.png', tmp_path/'test'/'final_right'/'market_1'/'frame_0001.png')
    ds = SintelStereo(tmp_path, passes=('clean', 'final'))
    assert len(ds) == 2 and ds[1]['name'] == 'sintel/final/alley_1/frame_0001'
    s = ds[0]; check_sample(s, nocc=True)
    assert not s['valid'][0, :, :2].any() and s['valid'][0, :, 2:].all() and not s['nocc'][0, :, 5].any()
    check_sample(SintelStereo(tmp_path, 'test', 'final')[0], gt=False)


def test_fallingthings(tmp_path):
    fx = 200.0  # depth fx * 600 / D must fit 16 bits
    cam = {'camera_settings': [{'name': 'left', 'intrinsic_settings': {'fx': fx, 'fy': fx, 'cx': W / 2, 'cy': H / 2}}]}
    for sub in ('mixed/kitchen_0', 'single/002_master_chef_can_16k/kitchen_0'):
        d = tmp_path/'fat'/sub
        d.mkdir(parents=True); (d/'_camera_settings.json').write_text(json.dumps(cam))
        l, r = pair(); write_image(d/'000000.left.jpg', l); write_image(d/'000000.right.jpg', r)
        depth = np.full((H, W), round(fx * 600 / D), np.uint16); depth[0, 0] = 0  # d = fx * 6 * 100 / depth
        write_image(d/'000000.left.depth.png', depth)
    ds = FallingThings(tmp_path)
    assert len(ds) == 2 and ds[0]['name'] == 'fallingthings/mixed/kitchen_0/000000'
    s = ds[1]
    assert not s['valid'][0, 0, 0] and torch.allclose(s['disp'][s['valid']], torch.tensor(D), atol=1e-3)
    assert len(FallingThings(tmp_path/'fat', 'single')) == 1
    (tmp_path/'fat'/'mixed'/'kitchen_0'/'_camera_settings.json').unlink()
    with pytest.raises(FileNotFoundError, match='camera settings .*kitchen_0/_camera_settings.json'): FallingThings(tmp_path, 'mixed')


def test_tartanair(tmp_path):
    for env, dif in (('abandonedfactory', 'Easy'), ('abandonedfactory', 'Hard'), ('hospital', 'Easy')):
        t = tmp_path/env/dif/'P000'
        write_pair(t/'image_left'/'000000_left.png', t/'image_right'/'000000_right.png')
        depth = np.full((H, W), 80 / D, np.float32); depth[0, 0] = 0
        (t/'depth_left').mkdir(); np.save(t/'depth_left'/'000000_left_depth.npy', depth)
    ds = TartanAir(tmp_path)
    assert len(ds) == 3 and ds[0]['name'] == 'tartanair/abandonedfactory/Easy/P000/000000'
    check_sample(ds[2]); assert not ds[2]['valid'][0, 0, 0]
    assert len(TartanAir(tmp_path, 'Easy', envs=['hospital'])) == 1
    with pytest.raises(FileNotFoundError, match=r"envs=\['nowhere'\]"): TartanAir(tmp_path, envs=['nowhere'])


# ---------------------------------------------------------------- SCARED

def test_scared_rectifies_and_converts_depth(tmp_path):
    cv2 = pytest.importorskip('cv2'); tifffile = pytest.importorskip('tifffile')
    f, B, Z = 20.0, 4.0, 40.0  # px, mm, mm: d = f B / Z = 2 px
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1]])
    for k in (1, 8):
        kf = tmp_path/f'dataset_{k}'/'keyframe_1'
        write_pair(kf/'Left_Image.png', kf/'Right_Image.png')
        v, u = np.mgrid[:H, :W].astype(np.float64)
        xyz = np.stack([(u - K[0, 2]) * Z / f, (v - K[1, 2]) * Z / f, np.full((H, W), Z)], -1).astype(np.float32)
        xyz[0, 0] = 0
        tifffile.imwrite(kf/'left_depth_map.tiff', xyz, photometric='rgb')
        fs = cv2.FileStorage(str(kf/'endoscope_calibration.yaml'), cv2.FILE_STORAGE_WRITE)
        for name, m in dict(M1=K, D1=np.zeros((1, 5)), M2=K, D2=np.zeros((1, 5)), R=np.eye(3), T=np.array([[-B], [0], [0]])).items():
            fs.write(name, m)
        fs.release()
    ds = SCARED(tmp_path)
    assert len(ds) == 1 and ds[0]['name'] == 'scared/dataset_1/keyframe_1'
    s = ds[0]
    assert set(s) == GT_KEYS and s['left'].shape == (3, H, W) and s['disp'].shape == (1, H, W)
    inner = s['valid'][0, 2:-2, 2:-2]
    assert inner.float().mean() > 0.9, inner.float().mean()
    # identical cameras, no distortion: rectification keeps (close to) the focal length, so d = f B / Z
    assert torch.allclose(s['disp'][s['valid']], torch.tensor(f * B / Z), rtol=0.1)
    assert len(SCARED(tmp_path, 'test')) == 1 and len(SCARED(tmp_path, datasets=[1, 8])) == 2
    with pytest.raises(FileNotFoundError, match=r'dataset_\{2\}/keyframe_\*/Left_Image.png'): SCARED(tmp_path, datasets=[2])


# ---------------------------------------------------------------- pairs only: Cityscapes, KITTI raw, StereoFolder

def test_cityscapes(tmp_path):
    for seq in (True, False):
        sfx = '_sequence' if seq else ''
        for fr in ('000019', '000020'):
            stem = f'aachen_000000_{fr}'
            write_pair(tmp_path/f'leftImg8bit{sfx}'/'train'/'aachen'/f'{stem}_leftImg8bit.png',
                       tmp_path/f'rightImg8bit{sfx}'/'train'/'aachen'/f'{stem}_rightImg8bit.png')
    ds = Cityscapes(tmp_path)
    assert len(ds) == 2 and ds[1]['name'] == 'cityscapes/train/aachen_000000_000020'
    check_sample(ds[0], gt=False)
    assert len(Cityscapes(tmp_path, sequence=False)) == 2
    with pytest.raises(FileNotFoundError, match='leftImg8bit_sequence/val'): Cityscapes(tmp_path, 'val')


def test_kitti_raw(tmp_path):
    for drive in ('2011_09_26_drive_0001_sync', '2011_09_26_drive_0002_sync'):
        d = tmp_path/'2011_09_26'/drive
        for i in range(2): write_pair(d/'image_02'/'data'/f'000000000{i}.png', d/'image_03'/'data'/f'000000000{i}.png', i)
    ds = KITTIRaw(tmp_path)
    assert len(ds) == 4 and ds[0]['name'] == 'kittiraw/2011_09_26_drive_0001_sync/0000000000'
    check_sample(ds[3], gt=False)
    assert len(KITTIRaw(tmp_path, drives=['2011_09_26_drive_0002_sync'])) == 2
    (tmp_path/'2011_09_26'/'2011_09_26_drive_0002_sync'/'image_03'/'data'/'0000000001.png').unlink()
    with pytest.raises(FileNotFoundError, match='right file .*drive_0002_sync/image_03/data/0000000001.png'): KITTIRaw(tmp_path)


def test_stereo_folder_npy_and_kitti_png(tmp_path):
    for i in range(3):
        write_pair(tmp_path/'cam_l'/f'{i:04d}.jpg', tmp_path/'cam_r'/f'{i:04d}.jpg', i)
        np.save(tmp_path/f'gt_{i:04d}.npy', np.full((H, W), D, np.float32))
    ds = StereoFolder(tmp_path, 'cam_l/*.jpg', 'cam_r/*.jpg', 'gt_*.npy')
    assert len(ds) == 3 and ds[2]['paths']['disp'].endswith('gt_0002.npy')
    s = ds[0]; assert set(s) == GT_KEYS and torch.allclose(s['disp'], torch.tensor(D))
    assert len(StereoFolder(tmp_path, 'cam_l/*.jpg', 'cam_r/*.jpg')) == 3
    (tmp_path/'gt_0001.npy').unlink()
    with pytest.raises(FileNotFoundError, match=f"expected '{tmp_path}/gt_0001.npy'"):
        StereoFolder(tmp_path, 'cam_l/*.jpg', 'cam_r/*.jpg', 'gt_*.npy')


# ---------------------------------------------------------------- bad input, loaders

@pytest.mark.parametrize('cls', [SceneFlow, KITTI, MiddEval3, Middlebury2014, ETH3D, SintelStereo, FallingThings,
                                 TartanAir, SCARED, Cityscapes, KITTIRaw, StereoFolder])
def test_missing_and_empty_roots(cls, tmp_path):
    with pytest.raises(FileNotFoundError, match=f"root '{tmp_path}/absent' does not exist"): cls(tmp_path/'absent')
    (tmp_path/'empty').mkdir()
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}/empty"): cls(tmp_path/'empty')
    with pytest.raises(TypeError, match='root is required'): cls(None)


def test_corrupt_files_name_the_file(tmp_path):
    write_mb_scene(tmp_path/'Piano-perfect', 'disp0.pfm')
    ds = Middlebury2014(tmp_path)
    pfm = tmp_path/'Piano-perfect'/'disp0.pfm'
    pfm.write_bytes(pfm.read_bytes()[:-10])
    with pytest.raises(ValueError, match='disp0.pfm.* is truncated'): ds[0]
    (tmp_path/'Piano-perfect'/'im0.png').write_bytes(b'\x89PNG\r\n\x1a\n garbage')
    with pytest.raises(ValueError, match='cannot read image .*Piano-perfect/im0.png'): ds[0]


def test_errors_surface_from_workers(tmp_path):
    write_mb_scene(tmp_path/'Piano-perfect', 'disp0.pfm')
    write_image(tmp_path/'Piano-perfect'/'im1.png', np.zeros((H, W - 2, 3), np.uint8))
    with pytest.raises(ValueError, match=r'im1.png.* is \(16, 22\): sizes must match'):
        next(iter(make_loader(Middlebury2014(tmp_path), batch_size=1, num_workers=1)))


def test_mix_pairs_and_padded_batches(tmp_path):
    write_mb_scene(tmp_path/'mb'/'Piano-perfect', 'disp0.pfm')
    for i in range(2): write_pair(tmp_path/'f'/'l'/f'{i}.png', tmp_path/'f'/'r'/f'{i}.png', i)
    pairs = StereoPairs(mix((Middlebury2014(tmp_path/'mb'), 3), StereoFolder(tmp_path/'f', 'l/*.png', 'r/*.png')))
    assert len(pairs) == 5 and all(set(pairs[i]) == KEYS for i in range(5))
    b = next(iter(make_loader(pairs, batch_size=5, shuffle=False, mode='pad', multiple=32)))
    assert b['left'].shape == (5, 3, 32, 32) and b['size'].tolist() == [[H, W]] * 5 and len(b['name']) == 5


def test_bundled_motorcycle_sample():
    ds = sample_dataset('motorcycle')
    s = ds[0]
    assert s['left'].shape == (3, 500, 741) and s['valid'].float().mean() > 0.9
    warped = warp_right_to_left(s['right'][None], s['disp'][None])[0]
    assert (warped - s['left']).abs().mean(0)[s['valid'][0]].mean() < 0.1
