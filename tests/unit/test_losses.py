"""Each objective against a direct re-computation from its formula on small hand-made tensors."""

import math

import torch
import torch.nn.functional as F

from vitforge.methods.cloob import clip_loss, cloob_loss, hopfield_retrieval, infoloob_loss
from vitforge.methods.mae import mae_loss, patchify, unpatchify
from vitforge.methods.nnclr import nnclr_loss, symmetric_nnclr_loss


def test_patchify_row_major_pqc_order() -> None:
    imgs = torch.arange(2 * 3 * 4 * 6, dtype=torch.float).reshape(2, 3, 4, 6)
    x = patchify(imgs, 2)
    assert x.shape == (2, 6, 12)
    # Patch (row 1, col 2) is index 1 * 3 + 2; inside it, pixel (p, q) channel c is at (p*2+q)*3+c.
    for p in range(2):
        for q in range(2):
            for c in range(3):
                assert x[1, 5, (p * 2 + q) * 3 + c] == imgs[1, c, 2 + p, 4 + q]
    assert torch.equal(unpatchify(x, 2, (2, 3), 3), imgs)


def test_mae_loss_matches_formula() -> None:
    torch.manual_seed(0)
    imgs = torch.randn(2, 1, 4, 4)
    pred = torch.randn(2, 4, 4)
    mask = torch.tensor([[1.0, 0, 1, 0], [0, 0, 0, 1]])
    total, count = 0.0, 0
    for b in range(2):
        for i in range(4):
            if mask[b, i]:
                r, c = divmod(i, 2)
                t = imgs[b, 0, 2 * r : 2 * r + 2, 2 * c : 2 * c + 2].flatten()
                mu = t.sum() / 4
                var = ((t - mu) ** 2).sum() / 3  # unbiased, as MAE's reference code
                t = (t - mu) / math.sqrt(var + 1e-6)
                total += ((pred[b, i] - t) ** 2).mean()
                count += 1
    assert torch.allclose(mae_loss(imgs, pred, mask, 2), total / count, atol=1e-6)
    raw = ((pred - patchify(imgs, 2)) ** 2).mean(-1)
    assert torch.allclose(mae_loss(imgs, pred, mask, 2, norm_pix=False), (raw * mask).sum() / 3)


def test_nnclr_loss_matches_formula_and_grads_flow_through_pred_only() -> None:
    torch.manual_seed(0)
    pred = torch.randn(4, 8, requires_grad=True)
    nn = torch.randn(4, 8, requires_grad=True)
    tau = 0.2
    loss = nnclr_loss(pred, nn, tau)
    pn, nnn = F.normalize(pred.detach(), dim=1), F.normalize(nn.detach(), dim=1)
    expected = 0.0
    for i in range(4):
        logits = [float(nnn[i] @ pn[j]) / tau for j in range(4)]
        expected += -logits[i] + math.log(sum(math.exp(v) for v in logits))
    assert math.isclose(loss.item(), expected / 4, rel_tol=1e-5)
    loss.backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0 and nn.grad is None
    sym = symmetric_nnclr_loss(pred, pred.detach() * 2, nn, nn * 3, tau)
    assert torch.allclose(sym, 0.5 * (nnclr_loss(pred.detach() * 2, nn, tau) + nnclr_loss(pred, nn * 3, tau)))


def test_hopfield_retrieval_formula() -> None:
    torch.manual_seed(0)
    s, mem = torch.randn(3, 4), torch.randn(5, 4)
    out = hopfield_retrieval(s, mem, beta=8.0)
    for i in range(3):
        w = torch.tensor([math.exp(8.0 * float(s[i] @ mem[j])) for j in range(5)])
        r = (w / w.sum()) @ mem
        assert torch.allclose(out[i], r / r.norm(), atol=1e-5)


def test_infoloob_excludes_positive_from_denominator() -> None:
    torch.manual_seed(0)
    x, y = F.normalize(torch.randn(4, 6), dim=1), F.normalize(torch.randn(4, 6), dim=1)
    inv_tau = 30.0
    total = 0.0
    for i in range(4):
        k = [inv_tau * float(x[i] @ y[j]) for j in range(4)]
        total += -k[i] + math.log(sum(math.exp(k[j]) for j in range(4) if j != i))
    assert math.isclose(infoloob_loss(x, y, inv_tau).item(), total / 4 / inv_tau, rel_tol=1e-5)


def _official_cloob(image_features: torch.Tensor, text_features: torch.Tensor, inv_tau: float, beta: float):
    """The ml-jku/cloob reference (columns as patterns, a large negative on the diagonal)."""

    def hopfield(state, stored):
        r = stored.T @ torch.softmax(beta * stored @ state.t(), dim=0)
        return r / r.norm(dim=0, keepdim=True)

    def infoloob(x, y, i):
        tau = 1 / inv_tau
        k = x @ y.T / tau
        positives = -torch.mean(torch.sum(k * i, dim=1))
        arg_lse = k * torch.logical_not(i) + i * -10000.0
        return tau * (positives + torch.mean(torch.logsumexp(arg_lse, dim=1)))

    p_xx, p_yy = hopfield(image_features, image_features), hopfield(text_features, text_features)
    p_xy, p_yx = hopfield(text_features, image_features), hopfield(image_features, text_features)
    i = torch.eye(p_xx.shape[1])
    return infoloob(p_xx.T, p_xy.T, i) + infoloob(p_yy.T, p_yx.T, i)


def test_cloob_matches_official_implementation() -> None:
    torch.manual_seed(0)
    img, txt = F.normalize(torch.randn(8, 16), dim=1), F.normalize(torch.randn(8, 16), dim=1)
    ours = cloob_loss(img, txt, inv_tau=30.0, beta=8.0)
    assert torch.allclose(ours, _official_cloob(img, txt, 30.0, 8.0), atol=1e-5)
    # And the definition in terms of the two functions.
    u_x, u_y = hopfield_retrieval(img, img, 8.0), hopfield_retrieval(txt, img, 8.0)
    v_x, v_y = hopfield_retrieval(img, txt, 8.0), hopfield_retrieval(txt, txt, 8.0)
    assert torch.allclose(ours, infoloob_loss(u_x, u_y, 30.0) + infoloob_loss(v_y, v_x, 30.0))


def test_clip_loss_formula() -> None:
    torch.manual_seed(0)
    img, txt = F.normalize(torch.randn(5, 8), dim=1), F.normalize(torch.randn(5, 8), dim=1)
    scale = 10.0
    sims = scale * img @ txt.T
    i2t = sum(-sims[i, i] + torch.logsumexp(sims[i], 0) for i in range(5)) / 5
    t2i = sum(-sims[i, i] + torch.logsumexp(sims[:, i], 0) for i in range(5)) / 5
    assert torch.allclose(clip_loss(img, txt, scale), (i2t + t2i) / 2, atol=1e-6)
