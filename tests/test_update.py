"""The update block with converted RAFT-Stereo weights reproduces the published computation.

`published_step` below is a direct, functional transcription of RAFT-Stereo's update equations on the *published*
tensors (2-channel flow (u, v) = (−d, 0), 2-channel head output, 128 motion channels): a second, independent path to
the same numbers, used only here.
"""
import pytest
import torch
import torch.nn.functional as F

from stereomae.corr import CorrPyramid1D
from stereomae.update import (MultiLevelUpdateBlock, convex_upsample, update_block_from_raft_stereo,
                              update_block_to_raft_stereo)


def published_state(n_gru_layers, hidden=16, corr_channels=10, factor=4, seed=0, motion=128, head=256):
    """RAFT-Stereo's update_block names and shapes for `n_gru_layers`, random values (y-channel weights included);
    `motion` / `head` other than the published 128 / 256 give the same layout with the kit's narrow widths."""
    g = torch.Generator().manual_seed(seed)
    h, m = hidden, motion // 2
    shapes = {'encoder.convc1': (m, corr_channels, 1, 1), 'encoder.convc2': (m, m, 3, 3),
              'encoder.convf1': (m, 2, 7, 7), 'encoder.convf2': (m, m, 3, 3), 'encoder.conv': (motion - 2, motion, 3, 3),
              'flow_head.conv1': (head, h, 3, 3), 'flow_head.conv2': (2, head, 3, 3),
              'mask.0': (head, h, 3, 3), 'mask.2': (9 * factor ** 2, head, 1, 1)}
    cin = {'gru08': h + motion + h * (n_gru_layers > 1), 'gru16': h + h * (n_gru_layers == 3) + h, 'gru32': h + h}
    for name, c in cin.items(): shapes.update({f'{name}.conv{k}': (h, c, 3, 3) for k in 'zrq'})
    sd = {}
    for k, s in shapes.items():
        fan_in = s[1] * s[2] * s[3]
        sd[f'module.update_block.{k}.weight'] = torch.randn(s, generator=g) / fan_in ** 0.5
        sd[f'module.update_block.{k}.bias'] = torch.randn(s[0], generator=g) * 0.1
    return sd


def published_step(sd, net, ctx, corr, flow, n):
    "One update of RAFT-Stereo's multi-level block with its own tensors: returns states, (Δu, Δv), mask."
    def conv(x, k, pad): return F.conv2d(x, sd[f'{k}.weight'], sd[f'{k}.bias'], padding=pad)
    def gru(name, h, c, *xs):
        x = torch.cat(xs, 1); hx = torch.cat([h, x], 1)
        z = torch.sigmoid(conv(hx, f'{name}.convz', 1) + c[0])
        r = torch.sigmoid(conv(hx, f'{name}.convr', 1) + c[1])
        q = torch.tanh(conv(torch.cat([r * h, x], 1), f'{name}.convq', 1) + c[2])
        return (1 - z) * h + z * q
    pool = lambda x: F.avg_pool2d(x, 3, stride=2, padding=1)
    up = lambda x, ref: F.interpolate(x, ref.shape[2:], mode='bilinear', align_corners=True)
    net = list(net)
    if n == 3: net[2] = gru('gru32', net[2], ctx[2], pool(net[1]))
    if n >= 2: net[1] = gru('gru16', net[1], ctx[1], pool(net[0]), *([up(net[2], net[1])] if n == 3 else []))
    cor = F.relu(conv(F.relu(conv(corr, 'encoder.convc1', 0)), 'encoder.convc2', 1))
    flo = F.relu(conv(F.relu(conv(flow, 'encoder.convf1', 3)), 'encoder.convf2', 1))
    motion = torch.cat([F.relu(conv(torch.cat([cor, flo], 1), 'encoder.conv', 1)), flow], 1)
    net[0] = gru('gru08', net[0], ctx[0], motion, *([up(net[1], net[0])] if n > 1 else []))
    delta = conv(F.relu(conv(net[0], 'flow_head.conv1', 1)), 'flow_head.conv2', 1)
    mask = 0.25 * conv(F.relu(conv(net[0], 'mask.0', 1)), 'mask.2', 0)
    return net, delta, mask


@pytest.mark.parametrize('n, motion, head', [(1, 128, 256), (2, 128, 256), (3, 128, 256), (3, 32, 24), (2, 64, 256)])
def test_converted_block_reproduces_published_computation(n, motion, head):
    "The published widths, and narrow motion encoders / heads (issue 18: the flow's gru08 column was fixed at h + 126)."
    torch.manual_seed(0)
    B, H, W, h = 1, 8, 24, 16
    published = published_state(n, hidden=h, motion=motion, head=head)
    sd = {k.removeprefix('module.update_block.'): v for k, v in published.items()}
    block = MultiLevelUpdateBlock((h, h, h), corr_channels=10, n_gru_layers=n, factor=4, motion_dim=motion, head_dim=head)
    block.load_state_dict(update_block_from_raft_stereo(published), strict=True)
    g = torch.Generator().manual_seed(1)
    sizes = [(H, W), (H // 2, W // 2), (H // 4, W // 4)][:n]
    net0 = [torch.randn(B, h, *s, generator=g).tanh() for s in sizes]
    ctx = [[torch.randn(B, h, *s, generator=g) for _ in range(3)] for s in sizes]
    corr_fn = CorrPyramid1D(torch.randn(B, 32, H, W, generator=g), torch.randn(B, 32, H, W, generator=g), levels=2, radius=2)
    disp = torch.rand(B, 1, H, W, generator=g) * 6         # ours: positive disparity
    flow = torch.cat([-disp, torch.zeros_like(disp)], 1)   # RAFT-Stereo: (u, v) = (−d, 0)
    net_ours, net_pub = net0, net0
    with torch.no_grad():
        for _ in range(3):
            out = block(net_ours, ctx, corr_fn(disp), disp, upsample_mask=True)
            net_pub, delta, mask = published_step(sd, net_pub, ctx, corr_fn(-flow[:, :1]), flow, n)
            delta[:, 1] = 0.0                                  # RAFT-Stereo projects onto the epipolar line
            flow = flow + delta
            disp, net_ours = disp + out.delta, out.net
            for a, b in zip(net_ours, net_pub): torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(disp, -flow[:, :1], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(out.mask, mask, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(convex_upsample(disp, out.mask, 4), -convex_upsample(flow, mask, 4)[:, :1],
                                       atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize('motion', [128, 32])
def test_round_trip_keeps_every_used_tensor(motion):
    published = published_state(3, hidden=16, motion=motion)
    back = update_block_to_raft_stereo(update_block_from_raft_stereo(published))
    again = update_block_from_raft_stereo(back)
    first = update_block_from_raft_stereo(published)
    assert again.keys() == first.keys()
    for k in first: torch.testing.assert_close(again[k], first[k], rtol=0, atol=0)


def test_narrow_block_in_the_published_layout_has_the_flow_where_raft_stereo_reads_it():
    "Issue 18: `update_block_to_raft_stereo` of a block with motion_dim != 128 put the flow columns at h + 126 (silently wrong)."
    block = MultiLevelUpdateBlock((16, 16, 16), corr_channels=10, motion_dim=32, head_dim=24)
    ours, pub = block.state_dict(), update_block_to_raft_stereo(block.state_dict())
    u = 16 + 30                                              # after the state (16) and the motion features (32 - 2)
    for k in ('gru08.convz.weight', 'gru08.convr.weight', 'gru08.convq.weight'):
        assert pub[k].shape[1] == ours[k].shape[1] + 1       # one more input: the flow's y component
        torch.testing.assert_close(pub[k][:, :u], ours[k][:, :u], rtol=0, atol=0)
        torch.testing.assert_close(pub[k][:, u], -ours[k][:, u], rtol=0, atol=0)          # u = -d
        assert not pub[k][:, u + 1].any()                                                # v never moves
        torch.testing.assert_close(pub[k][:, u + 2:], ours[k][:, u + 1:], rtol=0, atol=0)  # the 1/8 state


def test_bad_checkpoints_are_named():
    with pytest.raises(KeyError, match='missing'):
        update_block_from_raft_stereo({'update_block.encoder.convc1.weight': torch.zeros(1)})
    block = MultiLevelUpdateBlock((16, 16, 16), corr_channels=10)
    with pytest.raises(RuntimeError, match='size mismatch'):  # another configuration: torch names the tensor
        block.load_state_dict(update_block_from_raft_stereo(published_state(3, hidden=16, corr_channels=36)))


def test_narrow_update_block_has_the_asked_widths_and_runs():
    "motion_dim / head_dim shrink the published 128 / 256 (for tiny CPU models); the defaults keep the published shapes."
    wide, narrow = MultiLevelUpdateBlock((16, 16, 16), corr_channels=10), MultiLevelUpdateBlock((16, 16, 16), corr_channels=10,
                                                                                                   motion_dim=32, head_dim=24)
    assert wide.encoder.conv.weight.shape == (126, 128, 3, 3) and wide.flow_head.conv1.weight.shape == (256, 16, 3, 3)
    assert narrow.encoder.convc2.weight.shape == (16, 16, 3, 3) and narrow.encoder.conv.weight.shape == (30, 32, 3, 3)
    assert narrow.gru08.convz.weight.shape[1] == 16 + 31 + 16  # state + motion (30 + disparity) + the 1/8 state
    assert narrow.flow_head.conv1.weight.shape == (24, 16, 3, 3) and narrow.mask[0].weight.shape == (24, 16, 3, 3)
    assert narrow.mask[2].weight.shape == (9 * 16, 24, 1, 1)
    B, H, W = 2, 8, 12
    net = [torch.zeros(B, 16, H // s, W // s) for s in (1, 2, 4)]
    ctx = [[torch.zeros(B, 16, H // s, W // s)] * 3 for s in (1, 2, 4)]
    out = narrow(net, ctx, torch.randn(B, 10, H, W), torch.rand(B, 1, H, W), upsample_mask=True)
    assert out.delta.shape == (B, 1, H, W) and out.mask.shape == (B, 9 * 16, H, W)
    assert sum(p.numel() for p in narrow.parameters()) < sum(p.numel() for p in wide.parameters()) / 3
    with pytest.raises(ValueError, match='motion_dim is 33'): MultiLevelUpdateBlock((16, 16, 16), motion_dim=33)
    with pytest.raises(ValueError, match='head_dim is 0'): MultiLevelUpdateBlock((16, 16, 16), head_dim=0)
    with pytest.raises(RuntimeError, match='size mismatch'):  # a narrow block cannot take the published tensors
        narrow.load_state_dict(update_block_from_raft_stereo(published_state(3, hidden=16)))
