"""RAFT-Stereo compatibility of `stereomae.disparity`: the published checkpoint layout loads strictly and gives
RAFT-Stereo's disparities. The layout and the oracle live in `raft_stereo_layout.py`, written from the published
architecture without stereomae's model code."""
import pytest, torch
from raft_stereo_layout import published_layout, published_state_dict, n_parameters, reference_flow
from stereomae.disparity import DisparityModel, RAFT_STEREO_REALTIME, raft_stereo_options

SLOW = {'two-level-n3-group', 'three-level-slow-fast-r3'}  # run with --flags slow
CONFIGS = {
    'default': {},
    'realtime': RAFT_STEREO_REALTIME,
    'one-level-instance': dict(n_gru_layers=1, context_norm='instance'),
    'two-level-n3-group': dict(n_gru_layers=2, n_downsample=3, context_norm='group'),
    'three-level-slow-fast-r3': dict(slow_fast_gru=True, corr_levels=3, corr_radius=3),
}
_shape_opts = lambda o: {k: v for k, v in o.items() if k != 'slow_fast_gru'}


def test_default_layout_has_11_1M_parameters():
    layout = published_layout()
    assert len(layout) == 337
    assert round(n_parameters(layout) / 1e5) == 111          # 11.1 M, the published count
    ours = sum(p.numel() for p in DisparityModel().parameters())
    # ours drops the weights that only ever multiply RAFT-Stereo's zero vertical flow (8,897 of them)
    assert n_parameters(layout) - ours == 64 * 7 * 7 + 3 * 128 * 9 + 256 * 9 + 1
    assert round(ours / 1e5) == 111


@pytest.mark.parametrize('name', CONFIGS)
def test_published_layout_loads_strictly_and_round_trips(name):
    o = CONFIGS[name]
    sd = published_state_dict(**_shape_opts(o), prefix='module.')
    model = DisparityModel.from_raft_stereo(sd, **o)          # load_state_dict(strict=True) inside
    back = model.raft_stereo_state_dict()
    want = {k.removeprefix('module.'): tuple(v.shape) for k, v in sd.items()}
    assert {k: tuple(v.shape) for k, v in back.items()} == want  # same names and shapes back out
    for k, v in back.items():                                     # and the same values except v's zero weights
        ref = sd['module.' + k]
        if 'convf1.weight' in k: assert torch.equal(v[:, 0], ref[:, 0])
        elif 'flow_head.conv2' in k or 'convf1' in k: assert torch.equal(v[0], ref[0])
        elif 'gru08' in k and k.endswith('weight'):
            u = v.shape[0] + 126
            assert torch.equal(v[:, :u + 1], ref[:, :u + 1]) and torch.equal(v[:, u + 2:], ref[:, u + 2:])
        else: assert torch.equal(v, ref), k


@pytest.mark.parametrize('name', [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in CONFIGS])
def test_reproduces_raft_stereo(name):
    "Images in [0, 1] here, [0, 255] there; disparity here = -(x-flow) there."
    o = CONFIGS[name]
    sd = published_state_dict(**_shape_opts(o), generator=torch.Generator().manual_seed(1))
    for k in ('update_block.flow_head.conv2.weight', 'update_block.flow_head.conv2.bias'): sd[k] = 0.2 * sd[k]
    # (random weights make a chaotic recurrence: smaller steps keep float-rounding differences from growing)
    model = DisparityModel.from_raft_stereo(sd, **o).eval()
    g = torch.Generator().manual_seed(0)
    left = torch.rand(1, 3, 32, 96, generator=g)
    right = torch.roll(left, -3, -1) * 0.9 + 0.05
    with torch.no_grad(): disp = model(left, right, iters=4).disp
    flow = reference_flow(sd, 255 * left, 255 * right, iters=4, **o)
    assert flow.abs().mean() > 0.5                               # a real signal, not zeros compared with zeros
    torch.testing.assert_close(disp, -flow, atol=1e-3, rtol=1e-4)


def test_weights_only_file_and_options_from_shapes(tmp_path):
    sd = published_state_dict(**_shape_opts(RAFT_STEREO_REALTIME), prefix='module.')
    torch.save(sd, tmp_path / 'raftstereo-realtime.pth')
    found = raft_stereo_options(torch.load(tmp_path / 'raftstereo-realtime.pth', weights_only=True))
    assert found == dict(hidden_dims=(128, 128, 128), n_downsample=3, n_gru_layers=2, shared_backbone=True,
                         context_norm='batch', corr_channels=36)
    DisparityModel.from_raft_stereo(tmp_path / 'raftstereo-realtime.pth', **RAFT_STEREO_REALTIME)
    with pytest.raises(ValueError, match='n_downsample=2 but the checkpoint has n_downsample=3'):
        DisparityModel.from_raft_stereo(str(tmp_path / 'raftstereo-realtime.pth'))


def test_other_configurations_are_named():
    sd = published_state_dict(n_gru_layers=2, context_norm='instance', hidden_dims=(96, 96, 96))
    with pytest.raises(ValueError) as e: DisparityModel.from_raft_stereo(sd)
    msg = str(e.value)
    assert 'n_gru_layers=3 but the checkpoint has n_gru_layers=2' in msg
    assert "context_norm='batch' but the checkpoint has context_norm='instance'" in msg
    assert 'hidden_dims=(128, 128, 128) but the checkpoint has hidden_dims=(96, 96, 96)' in msg
    DisparityModel.from_raft_stereo(sd, n_gru_layers=2, context_norm='instance', hidden_dims=[96])


def test_narrow_update_block_converts_to_and_from_the_published_layout():
    "Issue 18: with motion_dim != 128 the published layout put the flow's gru08 columns at h + 126: silently wrong weights."
    o = dict(hidden_dims=(16, 16, 16), feature_dim=32, motion_dim=32, head_dim=24)
    torch.manual_seed(0)
    model = DisparityModel(**o).eval()
    ours, sd = model.state_dict(), model.raft_stereo_state_dict()
    u = 16 + 30                                                   # after the state (16) and the motion features (32 - 2)
    for g in 'zrq':
        w, p = ours[f'update_block.gru08.conv{g}.weight'], sd[f'update_block.gru08.conv{g}.weight']
        assert p.shape[1] == w.shape[1] + 1 and torch.equal(p[:, :u], w[:, :u])
        assert torch.equal(p[:, u], -w[:, u]) and not p[:, u + 1].any() and torch.equal(p[:, u + 2:], w[:, u + 1:])
    again = DisparityModel.from_raft_stereo({'module.' + k: v for k, v in sd.items()}, **o).eval()
    for k, v in ours.items(): assert torch.equal(again.state_dict()[k], v), k
    g = torch.Generator().manual_seed(0)
    left = torch.rand(1, 3, 32, 96, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(again(left, torch.roll(left, -3, -1), iters=3).disp, model(left, torch.roll(left, -3, -1), iters=3).disp)
