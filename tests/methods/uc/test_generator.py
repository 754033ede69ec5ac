import pytest
import torch

from uc_datasets.methods.uc.generator import (
    Perturbation,
    ResnetGenerator,
    generator_size,
)


def test_reference_architecture():
    g = ResnetGenerator()  # ngf=64, 6 blocks
    convs = [m for m in g.modules() if isinstance(m, torch.nn.Conv2d)]
    tconvs = [m for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert convs[0].kernel_size == (7, 7) and convs[0].out_channels == 64
    assert [c.out_channels for c in convs[1:3]] == [128, 256] and all(c.stride == (2, 2) for c in convs[1:3])
    assert len(convs) == 3 + 6 * 2 + 1 and convs[-1].out_channels == 3
    assert [t.out_channels for t in tconvs] == [128, 64] and all(t.output_padding == (1, 1) for t in tconvs)
    assert isinstance(g.net[-1], torch.nn.Tanh)


@pytest.mark.parametrize("parametrization", ["generator", "direct"])
@pytest.mark.parametrize("hw", [(28, 28), (7, 13), (1, 1)])
def test_perturbation_shape_bound_and_seed(parametrization, hw):
    eps = 4 / 255
    a = Perturbation(hw, eps, parametrization, ngf=8, n_blocks=1, seed=5)
    b = Perturbation(hw, eps, parametrization, ngf=8, n_blocks=1, seed=5)
    c = Perturbation(hw, eps, parametrization, ngf=8, n_blocks=1, seed=6)
    d = a()
    assert d.shape == (3, *hw) and float(d.abs().max()) <= eps + 1e-7  # float32 eps
    assert torch.equal(d, b()) and not torch.equal(d, c())
    d.sum().backward()  # trainable
    assert any(p.grad is not None for p in a.parameters())


def test_generator_sizes_and_errors():
    assert generator_size((28, 28)) == (28, 28)
    assert generator_size((7, 13)) == (8, 16)
    with pytest.raises(ValueError, match="parametrization"):
        Perturbation((4, 4), 0.1, "mlp")


def test_seeded_init_leaves_global_rng_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    Perturbation((8, 8), 0.1, "generator", ngf=8, n_blocks=1, seed=1)
    assert torch.equal(torch.rand(3), expected)
