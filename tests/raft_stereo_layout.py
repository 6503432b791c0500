"""The parameter names and shapes of RAFT-Stereo's published checkpoints (`raftstereo-*.pth`), written down from the
published architecture (princeton-vl/RAFT-Stereo: core/extractor.py, core/update.py, core/raft_stereo.py) without
using stereomae's model code, so that loading them into `DisparityModel` is an independent check of the layout."""
from collections import OrderedDict
import torch


def _norm(sd, p, kind, c):
    if kind == 'batch':
        for k in ('weight', 'bias', 'running_mean', 'running_var'): sd[f'{p}.{k}'] = (c,)
        sd[f'{p}.num_batches_tracked'] = ()
    elif kind == 'group':
        sd[f'{p}.weight'] = (c,); sd[f'{p}.bias'] = (c,)


def _conv(sd, p, cout, cin, k, bias=True):
    sd[f'{p}.weight'] = (cout, cin, k, k)
    if bias: sd[f'{p}.bias'] = (cout,)


def _resblock(sd, p, cin, cout, norm, stride):
    _conv(sd, f'{p}.conv1', cout, cin, 3); _conv(sd, f'{p}.conv2', cout, cout, 3)
    _norm(sd, f'{p}.norm1', norm, cout); _norm(sd, f'{p}.norm2', norm, cout)
    if stride != 1 or cin != cout:
        _norm(sd, f'{p}.norm3', norm, cout)
        _conv(sd, f'{p}.downsample.0', cout, cin, 1); _norm(sd, f'{p}.downsample.1', norm, cout)


def _trunk(sd, p, norm, n_down, n_layers=3):
    _conv(sd, f'{p}.conv1', 64, 3, 7); _norm(sd, f'{p}.norm1', norm, 64)
    chans = [(64, 64, 1), (64, 96, 1 + (n_down > 1)), (96, 128, 1 + (n_down > 0)), (128, 128, 2), (128, 128, 2)]
    for i, (cin, cout, s) in enumerate(chans[:n_layers]):
        _resblock(sd, f'{p}.layer{i+1}.0', cin, cout, norm, s); _resblock(sd, f'{p}.layer{i+1}.1', cout, cout, norm, 1)


def published_layout(hidden_dims=(128, 128, 128), n_downsample=2, n_gru_layers=3, shared_backbone=False,
                     context_norm='batch', corr_levels=4, corr_radius=4, prefix=''):
    "OrderedDict name -> shape of a RAFT-Stereo checkpoint (as `torch.save(model.state_dict())` writes it)."
    sd, h = OrderedDict(), list(hidden_dims)
    # cnet = MultiBasicEncoder(output_dim=[hidden_dims, context_dims])
    _trunk(sd, 'cnet', context_norm, n_downsample, 5)
    for j in range(2):
        _resblock(sd, f'cnet.outputs08.{j}.0', 128, 128, context_norm, 1); _conv(sd, f'cnet.outputs08.{j}.1', h[2], 128, 3)
    for j in range(2):
        _resblock(sd, f'cnet.outputs16.{j}.0', 128, 128, context_norm, 1); _conv(sd, f'cnet.outputs16.{j}.1', h[1], 128, 3)
    for j in range(2): _conv(sd, f'cnet.outputs32.{j}', h[0], 128, 3)
    # update_block = BasicMultiUpdateBlock
    u = 'update_block'
    _conv(sd, f'{u}.encoder.convc1', 64, corr_levels * (2 * corr_radius + 1), 1)
    _conv(sd, f'{u}.encoder.convc2', 64, 64, 3)
    _conv(sd, f'{u}.encoder.convf1', 64, 2, 7)
    _conv(sd, f'{u}.encoder.convf2', 64, 64, 3)
    _conv(sd, f'{u}.encoder.conv', 126, 128, 3)
    gru_in = {'gru08': (h[2], 128 + h[1] * (n_gru_layers > 1)), 'gru16': (h[1], h[0] * (n_gru_layers == 3) + h[2]),
              'gru32': (h[0], h[1])}
    for g, (hd, xd) in gru_in.items():
        for c in ('convz', 'convr', 'convq'): _conv(sd, f'{u}.{g}.{c}', hd, hd + xd, 3)
    _conv(sd, f'{u}.flow_head.conv1', 256, h[2], 3); _conv(sd, f'{u}.flow_head.conv2', 2, 256, 3)
    _conv(sd, f'{u}.mask.0', 256, h[2], 3); _conv(sd, f'{u}.mask.2', (2 ** n_downsample) ** 2 * 9, 256, 1)
    for i in range(n_gru_layers): _conv(sd, f'context_zqr_convs.{i}', h[i] * 3, h[i], 3)
    if shared_backbone:
        _resblock(sd, 'conv2.0', 128, 128, 'instance', 1); _conv(sd, 'conv2.1', 256, 128, 3)
    else:
        _trunk(sd, 'fnet', 'instance', n_downsample, 3); _conv(sd, 'fnet.conv2', 256, 128, 1)
    return OrderedDict((prefix + k, v) for k, v in sd.items())


def published_state_dict(generator=None, **options):
    "A random state dict with the published names and shapes (BatchNorm statistics plausible: var > 0)."
    g = generator or torch.Generator().manual_seed(0)
    out = OrderedDict()
    for k, shape in published_layout(**options).items():
        if k.endswith('num_batches_tracked'): out[k] = torch.tensor(1000)
        elif k.endswith('running_var'): out[k] = 0.5 + torch.rand(shape, generator=g)
        elif k.endswith(('running_mean', 'bias')): out[k] = 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1: out[k] = 1 + 0.1 * torch.randn(shape, generator=g)  # norm scales
        else:
            fan_in = shape[1] * shape[2] * shape[3]
            out[k] = torch.randn(shape, generator=g) * (2 / fan_in) ** 0.5
    for k in out:  # `norm3` and `downsample.1` are one module in RAFT-Stereo: the same tensors under two names
        if '.downsample.1.' in k: out[k] = out[k.replace('.downsample.1.', '.norm3.')]
    return out


def n_parameters(layout):
    "Count of learnable parameters (BatchNorm statistics and counters excluded; shared norm3/downsample.1 once)."
    n = 0
    for k, s in layout.items():
        if k.endswith(('running_mean', 'running_var', 'num_batches_tracked')) or '.downsample.1.' in k: continue
        n += int(torch.tensor(s).prod()) if s else 1
    return n


# ---- RAFT-Stereo's forward pass, written functionally on a published state dict (test oracle) ----
import torch.nn.functional as F


class _Ref:
    "RAFT-Stereo's computation (2-channel x/y flow, images in [0, 255]) read straight from a published state dict."
    def __init__(self, sd, hidden_dims=(128, 128, 128), n_downsample=2, n_gru_layers=3, shared_backbone=False,
                 context_norm='batch', corr_levels=4, corr_radius=4, slow_fast_gru=False):
        self.sd = {k.removeprefix('module.'): v for k, v in sd.items()}
        self.n, self.L, self.shared, self.norm = n_downsample, n_gru_layers, shared_backbone, context_norm
        self.levels, self.r, self.slow_fast = corr_levels, corr_radius, slow_fast_gru

    def conv(self, x, p, stride=1):
        w = self.sd[f'{p}.weight']
        return F.conv2d(x, w, self.sd.get(f'{p}.bias'), stride, w.shape[-1] // 2)

    def nrm(self, x, p, kind, groups=None):
        if kind == 'batch':
            s = self.sd
            return F.batch_norm(x, s[f'{p}.running_mean'], s[f'{p}.running_var'], s[f'{p}.weight'], s[f'{p}.bias'], False, 0., 1e-5)
        if kind == 'instance': return F.instance_norm(x, eps=1e-5)
        if kind == 'group': return F.group_norm(x, groups or x.shape[1] // 8, self.sd[f'{p}.weight'], self.sd[f'{p}.bias'])
        return x

    def res(self, x, p, kind, stride=1):
        y = F.relu(self.nrm(self.conv(x, f'{p}.conv1', stride), f'{p}.norm1', kind))
        y = F.relu(self.nrm(self.conv(y, f'{p}.conv2'), f'{p}.norm2', kind))
        if f'{p}.downsample.0.weight' in self.sd:
            x = self.nrm(self.conv(x, f'{p}.downsample.0', stride), f'{p}.downsample.1', kind)
        return F.relu(x + y)

    def trunk(self, x, p, kind):
        x = F.relu(self.nrm(self.conv(x, f'{p}.conv1', 1 + (self.n > 2)), f'{p}.norm1', kind, 8))
        for i, s in enumerate((1, 1 + (self.n > 1), 1 + (self.n > 0))):
            x = self.res(self.res(x, f'{p}.layer{i+1}.0', kind, s), f'{p}.layer{i+1}.1', kind)
        return x

    def gru(self, p, h, cz, cr, cq, *xs):
        x = torch.cat(xs, 1)
        z = torch.sigmoid(self.conv(torch.cat([h, x], 1), f'{p}.convz') + cz)
        r = torch.sigmoid(self.conv(torch.cat([h, x], 1), f'{p}.convr') + cr)
        q = torch.tanh(self.conv(torch.cat([r * h, x], 1), f'{p}.convq') + cq)
        return (1 - z) * h + z * q

    def lookup(self, vol_pyr, x1):  # x1: (B, 1, h, w) matching x-coordinate at level 0
        out = []
        for i, vol in enumerate(vol_pyr):  # vol: (B, h, w, W_i)
            W = vol.shape[-1]
            pos = x1[:, 0, :, :, None] / 2 ** i + torch.arange(-self.r, self.r + 1, dtype=x1.dtype)  # (B, h, w, 2r+1)
            x0 = pos.floor(); a = pos - x0
            def take(xi):
                ok = (xi >= 0) & (xi <= W - 1)
                return torch.gather(vol, -1, xi.clamp(0, W - 1).long()) * ok
            out.append(take(x0) * (1 - a) + take(x0 + 1) * a)
        return torch.cat(out, -1).permute(0, 3, 1, 2)

    @torch.no_grad()
    def __call__(self, image1, image2, iters=12):
        "x-flow (B, 1, H, W) of the last iteration, as RAFT-Stereo's forward(test_mode=True) returns it."
        i1, i2 = 2 * (image1 / 255.0) - 1.0, 2 * (image2 / 255.0) - 1.0
        B = i1.shape[0]
        if self.shared:
            v = self.trunk(torch.cat([i1, i2]), 'cnet', self.norm); x = v[:B]
            f = self.conv(self.res(v, 'conv2.0', 'instance'), 'conv2.1'); f1, f2 = f[:B], f[B:]
        else:
            x = self.trunk(i1, 'cnet', self.norm)
            f = self.conv(self.trunk(torch.cat([i1, i2]), 'fnet', 'instance'), 'fnet.conv2'); f1, f2 = f[:B], f[B:]
        ctx = [[self.conv(self.res(x, f'cnet.outputs08.{j}.0', self.norm), f'cnet.outputs08.{j}.1') for j in (0, 1)]]
        if self.L > 1:
            x = self.res(self.res(x, 'cnet.layer4.0', self.norm, 2), 'cnet.layer4.1', self.norm)
            ctx.append([self.conv(self.res(x, f'cnet.outputs16.{j}.0', self.norm), f'cnet.outputs16.{j}.1') for j in (0, 1)])
        if self.L > 2:
            x = self.res(self.res(x, 'cnet.layer5.0', self.norm, 2), 'cnet.layer5.1', self.norm)
            ctx.append([self.conv(x, f'cnet.outputs32.{j}') for j in (0, 1)])
        net = [torch.tanh(a) for a, _ in ctx]
        inp = [self.conv(torch.relu(c), f'context_zqr_convs.{i}').chunk(3, 1) for i, (_, c) in enumerate(ctx)]
        D = f1.shape[1]
        vol = torch.einsum('bdhx,bdhy->bhxy', f1, f2) / D ** 0.5
        pyr = [vol]
        for _ in range(self.levels - 1): pyr.append(F.avg_pool1d(pyr[-1].flatten(0, 2)[:, None], 2, 2)[:, 0].view(*vol.shape[:3], -1))
        h, w = f1.shape[-2:]
        x0 = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w).expand(B, 1, h, w)
        flow = torch.zeros(B, 2, h, w)
        pool2x = lambda t: F.avg_pool2d(t, 3, stride=2, padding=1)
        interp = lambda t, d: F.interpolate(t, d.shape[2:], mode='bilinear', align_corners=True)
        u = 'update_block'
        def step(i08, i16, i32, corr=None):
            if i32: net[2] = self.gru(f'{u}.gru32', net[2], *inp[2], pool2x(net[1]))
            if i16:
                extra = [interp(net[2], net[1])] if self.L > 2 else []
                net[1] = self.gru(f'{u}.gru16', net[1], *inp[1], pool2x(net[0]), *extra)
            if i08:
                c = F.relu(self.conv(F.relu(self.conv(corr, f'{u}.encoder.convc1')), f'{u}.encoder.convc2'))
                fl = F.relu(self.conv(F.relu(self.conv(flow, f'{u}.encoder.convf1')), f'{u}.encoder.convf2'))
                mf = torch.cat([F.relu(self.conv(torch.cat([c, fl], 1), f'{u}.encoder.conv')), flow], 1)
                extra = [interp(net[1], net[0])] if self.L > 1 else []
                net[0] = self.gru(f'{u}.gru08', net[0], *inp[0], mf, *extra)
        for _ in range(iters):
            corr = self.lookup(pyr, x0 + flow[:, :1])
            if self.L == 3 and self.slow_fast: step(False, False, True)
            if self.L >= 2 and self.slow_fast: step(False, True, self.L == 3)
            step(True, self.L >= 2, self.L == 3, corr)
            delta = self.conv(F.relu(self.conv(net[0], f'{u}.flow_head.conv1')), f'{u}.flow_head.conv2')
            delta[:, 1] = 0
            flow = flow + delta
        mask = .25 * self.conv(F.relu(self.conv(net[0], f'{u}.mask.0')), f'{u}.mask.2')
        fac = 2 ** self.n
        mask = torch.softmax(mask.view(B, 1, 9, fac, fac, h, w), dim=2)
        up = F.unfold(fac * flow, [3, 3], padding=1).view(B, 2, 9, 1, 1, h, w)
        up = (mask * up).sum(2).permute(0, 1, 4, 2, 5, 3).reshape(B, 2, fac * h, fac * w)
        return up[:, :1]


def reference_flow(sd, image1, image2, iters=12, **options):
    "RAFT-Stereo's x-flow (negative disparity) for images in [0, 255], computed from a published state dict."
    return _Ref(sd, **options)(image1, image2, iters)
