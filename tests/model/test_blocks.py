"""FMB, LCB and the Wukong layer against direct reference computations."""

from __future__ import annotations

import pytest
import torch

from wukong.model.blocks import AttentiveProjection, FactorizationMachineBlock, LinearCompressionBlock, RowProducts
from wukong.model.stack import WukongArch, WukongLayer


def reference_fmb(block: FactorizationMachineBlock, x: torch.Tensor) -> torch.Tensor:
    """FMB written the naive way: the full n×n interaction matrix X Xᵀ, then projected by Y."""
    y = block.projection(x)
    y = y.expand(x.shape[0], -1, -1) if y.dim() == 2 else y
    full = torch.einsum("bid,bjd->bij", x, x)  # X Xᵀ, every pairwise dot product
    fm = torch.einsum("bij,bjk->bik", full, y).reshape(x.shape[0], -1)
    fm = torch.nn.functional.layer_norm(fm, fm.shape[1:], block.norm.weight, block.norm.bias, block.norm.eps)
    return block.mlp(fm).view(x.shape[0], block.num_outputs, block.dim)


@pytest.mark.parametrize("projection", ["static", "attentive"])
def test_fmb_equals_explicit_x_xt_y(projection: str) -> None:
    block = FactorizationMachineBlock(num_inputs=7, dim=5, num_outputs=3, rank=4, hidden=[16], projection=projection)
    with torch.no_grad():  # non-trivial LayerNorm affine parameters, so they are exercised too
        block.norm.weight.uniform_(0.5, 1.5)
        block.norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(6, 7, 5, dtype=torch.float64)
    block = block.double()
    out = block(x)
    assert out.shape == (6, 3, 5)
    torch.testing.assert_close(out, reference_fmb(block, x))


def test_fm_interactions_are_the_projected_gram_matrix() -> None:
    block = FactorizationMachineBlock(num_inputs=5, dim=3, num_outputs=2, rank=2, hidden=[4]).double()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    y = block.projection.weight
    expected = torch.stack([(xb @ xb.T) @ y for xb in x])
    torch.testing.assert_close(block.interactions(x), expected)


def test_row_products_backward_is_autograds_of_bmm() -> None:
    """The FM's second product has its own backward (faster operand layouts): same gradients as
    autograd's ``bmm(A, Bᵀ)``, numerically checked in float64, and inputs that need none get none."""
    a = torch.randn(3, 7, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(RowProducts.apply, (a, b))
    grad = torch.randn(3, 7, 4, dtype=torch.float64)
    ours = torch.autograd.grad(RowProducts.apply(a, b), (a, b), grad)
    theirs = torch.autograd.grad(torch.bmm(a, b.transpose(1, 2)), (a, b), grad)
    for mine, reference in zip(ours, theirs):
        torch.testing.assert_close(mine, reference)
    frozen = b.detach()
    (only_a,) = torch.autograd.grad(RowProducts.apply(a, frozen), (a,), grad)
    torch.testing.assert_close(only_a, theirs[0])


def test_row_products_under_bf16_autocast_match_autograds() -> None:
    """Under autocast the product runs in bf16 and each input gets a gradient of its own dtype, as
    autograd's ``bmm`` gives them."""
    a = torch.randn(4, 9, 16, requires_grad=True)
    b = torch.randn(4, 3, 16, requires_grad=True)
    grad = torch.randn(4, 9, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours, theirs = RowProducts.apply(a, b), torch.bmm(a, b.transpose(1, 2))
    assert ours.dtype == theirs.dtype == torch.bfloat16
    mine = torch.autograd.grad(ours, (a, b), grad.to(torch.bfloat16))
    reference = torch.autograd.grad(theirs, (a, b), grad.to(torch.bfloat16))
    for got, want in zip(mine, reference):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-2)


def test_lcb_equals_w_x() -> None:
    lcb = LinearCompressionBlock(num_inputs=9, num_outputs=4).double()
    x = torch.randn(3, 9, 6, dtype=torch.float64)
    expected = torch.stack([lcb.weight @ xb for xb in x])
    torch.testing.assert_close(lcb(x), expected)
    assert lcb(x).shape == (3, 4, 6)


def test_layer_compresses_the_residual_when_shapes_differ() -> None:
    n, nf, nl, d = 11, 3, 4, 6  # n != nF + nL
    layer = WukongLayer(num_inputs=n, dim=d, num_fmb=nf, num_lcb=nl, rank=2, fmb_hidden=[8]).double()
    assert isinstance(layer.residual, LinearCompressionBlock)
    assert layer.residual.weight.shape == (nf + nl, n)
    x = torch.randn(4, n, d, dtype=torch.float64)
    expected = torch.nn.functional.layer_norm(
        torch.cat([layer.fmb(x), layer.lcb.weight @ x], dim=1) + layer.residual.weight @ x,
        (d,),
        layer.norm.weight,
        layer.norm.bias,
        layer.norm.eps,
    )
    torch.testing.assert_close(layer(x), expected)
    # The residual really contributes: zeroing it changes the output.
    with torch.no_grad():
        layer.residual.weight.zero_()
    assert not torch.allclose(layer(x), expected)


def test_layer_uses_identity_residual_when_shapes_match() -> None:
    layer = WukongLayer(num_inputs=7, dim=4, num_fmb=3, num_lcb=4, rank=2, fmb_hidden=[8]).double()
    x = torch.randn(2, 7, 4, dtype=torch.float64)
    expected = torch.nn.functional.layer_norm(
        torch.cat([layer.fmb(x), layer.lcb(x)], dim=1) + x, (4,), layer.norm.weight, layer.norm.bias, layer.norm.eps
    )
    torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize("projection", ["static", "attentive"])
@pytest.mark.parametrize("num_inputs", [7, 11])  # identity residual (n = nF + nL), compressed residual
def test_layer_row_maps_in_one_product_match_each_map_alone(projection: str, num_inputs: int) -> None:
    """``row_maps`` computes ``Yᵀ X``, ``W_L X`` and ``W_r X`` in one batched product: the layer's
    output and every gradient equal those of each block applied on its own."""
    torch.manual_seed(0)
    layer = WukongLayer(num_inputs, 4, num_fmb=3, num_lcb=4, rank=2, fmb_hidden=[8], projection=projection).double()
    x = torch.randn(5, num_inputs, 4, dtype=torch.float64, requires_grad=True)

    def separately(x: torch.Tensor) -> torch.Tensor:
        interactions = torch.cat([layer.fmb(x), layer.lcb(x)], dim=1)  # the FMB computes its own Yᵀ X
        return layer.norm(interactions + layer.residual(x))

    def output_and_gradients(forward) -> list[torch.Tensor]:
        out = forward(x)
        weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)  # every output counts
        return [out, *torch.autograd.grad((out * weights).sum(), [x, *layer.parameters()])]

    for fused, alone in zip(output_and_gradients(layer), output_and_gradients(separately), strict=True):
        torch.testing.assert_close(fused, alone)


def test_stack_widths_follow_the_layers() -> None:
    arch = WukongArch(
        num_features=13, dim=4, num_layers=3, num_fmb=2, num_lcb=3, rank=2, fmb_hidden=[8], head_hidden=[8]
    )
    assert [layer.fmb.num_inputs for layer in arch.layers] == [13, 5, 5]
    assert arch.head.in_features == 5 * 4


def test_attentive_projection_depends_on_the_input() -> None:
    block = FactorizationMachineBlock(num_inputs=6, dim=4, num_outputs=2, rank=3, hidden=[8], projection="attentive")
    assert isinstance(block.projection, AttentiveProjection)
    x1, x2 = torch.randn(1, 6, 4), torch.randn(1, 6, 4)
    y1, y2 = block.projection(x1), block.projection(x2)
    assert y1.shape == (1, 6, 3)
    assert not torch.allclose(y1, y2)
    # Per example: in a batch, each example gets its own Y.
    both = block.projection(torch.cat([x1, x2]))
    torch.testing.assert_close(both, torch.cat([y1, y2]))


def test_static_projection_does_not_depend_on_the_input() -> None:
    block = FactorizationMachineBlock(num_inputs=6, dim=4, num_outputs=2, rank=3, hidden=[8], projection="static")
    y1, y2 = block.projection(torch.randn(1, 6, 4)), block.projection(torch.randn(5, 6, 4))
    assert torch.equal(y1, y2)
    assert y1.shape == (6, 3)


def test_unknown_projection_is_rejected() -> None:
    with pytest.raises(ValueError, match="static' or 'attentive"):
        FactorizationMachineBlock(num_inputs=6, dim=4, num_outputs=2, rank=3, hidden=[8], projection="dynamic")
