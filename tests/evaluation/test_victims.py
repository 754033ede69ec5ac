"""Victims: configs, stems, augmentation and a tiny training run (no download)."""

import pytest
import torch
from accelerate import Accelerator

from tests.torch_threads import one_thread
from uc_datasets.core.augment import augment_batch, random_crop, random_flip, random_resized_crop
from uc_datasets.core.models import VICTIMS, build_victim, canonical_victim_name, victim_config
from uc_datasets.evaluation.defenses import get_defense
from uc_datasets.evaluation.victims import TrainConfig, predict, train_victim


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    with one_thread():
        yield


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    "name, expected",
    # torchvision's parameter counts for 1000 classes (resnet18, efficientnet_b1, regnet_x_1_6gf).
    [("resnet18", 11_689_512), ("efficientnet-b1", 7_794_184), ("regnetx-1.6gf", 9_190_136)],
)
def test_full_size_victims_match_reference_architectures(name, expected):
    victim = build_victim(name, 1000, image_size=224)
    assert not victim.small_input
    assert n_params(victim) == expected


def test_configs_are_the_papers_variants():
    resnet = victim_config("resnet18", 10)
    assert (resnet.layer_type, resnet.depths, resnet.hidden_sizes) == ("basic", [2, 2, 2, 2], [64, 128, 256, 512])
    effnet = victim_config("efficientnet-b1", 10)
    assert (effnet.width_coefficient, effnet.depth_coefficient, effnet.hidden_dim) == (1.0, 1.1, 1280)
    regnet = victim_config("regnetx-1.6gf", 10)
    assert (regnet.layer_type, regnet.depths, regnet.groups_width) == ("x", [2, 4, 10, 2], 24)
    assert regnet.hidden_sizes == [72, 168, 408, 912]


def test_width_multiplier_scales_channels():
    assert victim_config("resnet18", 3, width=0.25).hidden_sizes == [16, 32, 64, 128]
    regnet = victim_config("regnetx-1.6gf", 3, width=0.5)
    assert regnet.groups_width == 12 and all(h % 12 == 0 for h in regnet.hidden_sizes)
    small, full = build_victim("resnet18", 3, width=0.25, image_size=8), build_victim("resnet18", 3, image_size=8)
    assert small.width == 0.25
    assert n_params(small) < n_params(full) / 10


def test_small_input_stem():
    victim = build_victim("resnet18", 3, width=0.125, image_size=64)
    assert victim.small_input
    conv = victim.model.resnet.embedder.embedder.convolution
    assert (conv.kernel_size, conv.stride) == ((3, 3), (1, 1))
    assert isinstance(victim.model.resnet.embedder.pooler, torch.nn.Identity)
    assert not build_victim("resnet18", 3, width=0.125, image_size=65).small_input
    # Small stem keeps 8x more resolution: 16 px -> 2x2 final map instead of 1x1.
    hidden = victim.model.resnet(torch.rand(1, 3, 16, 16), output_hidden_states=True).last_hidden_state
    assert hidden.shape[-2:] == (2, 2)
    regnet = build_victim("regnetx-1.6gf", 3, width=0.125, image_size=16)
    assert regnet.model.regnet.embedder.embedder.convolution.stride == (1, 1)
    effnet = build_victim("efficientnet-b1", 3, width=0.125, image_size=16)
    assert effnet.model.efficientnet.embeddings.convolution.stride == (1, 1)


@pytest.mark.parametrize("name", VICTIMS)
def test_every_victim_runs_on_tiny_images(name):
    victim = build_victim(name, 4, width=0.125, image_size=8, seed=0).eval()
    logits = victim(torch.rand(2, 3, 8, 8))
    assert logits.shape == (2, 4) and torch.isfinite(logits).all()


def test_seeded_build_is_reproducible_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = build_victim("resnet18", 2, width=0.125, image_size=8, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    b = build_victim("resnet18", 2, width=0.125, image_size=8, seed=5)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_bad_names_and_inputs():
    assert canonical_victim_name("RegNetX_1.6GF") == "regnetx-1.6gf"
    with pytest.raises(ValueError, match="Unknown victim 'vgg16'"):
        build_victim("vgg16", 3)
    with pytest.raises(ValueError, match="width"):
        victim_config("resnet18", 3, width=0)
    with pytest.raises(ValueError, match="RGB"):
        build_victim("resnet18", 2, width=0.125, image_size=8)(torch.rand(1, 1, 8, 8))


# --- augmentation ---------------------------------------------------------------------------


def test_flip_exact():
    x = torch.arange(6.0).view(2, 1, 1, 3)
    assert torch.equal(random_flip(x, p=1.0), x.flip(-1))
    assert torch.equal(random_flip(x, p=0.0), x)


def test_random_crop_is_a_shifted_window_of_the_padded_image():
    torch.manual_seed(0)
    x = torch.arange(1.0, 1.0 + 2 * 3 * 4 * 4).view(2, 3, 4, 4)
    out = random_crop(x, padding=1)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    for i in range(2):
        windows = [padded[i, :, t : t + 4, l : l + 4] for t in range(3) for l in range(3)]
        assert any(torch.equal(out[i], w) for w in windows)
    assert torch.equal(random_crop(x, padding=0), x)


def test_random_resized_crop_with_full_scale_is_identity():
    x = torch.rand(2, 3, 6, 6)
    out = random_resized_crop(x, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert torch.allclose(out, x, atol=1e-5)


def test_augment_batch_modes():
    x = torch.rand(3, 3, 16, 16)
    assert augment_batch(x, "none") is x
    assert augment_batch(x, "crop").shape == x.shape
    with pytest.raises(ValueError, match="Unknown augmentation"):
        augment_batch(x, "mixup")


# --- training -------------------------------------------------------------------------------


def separable_data(n: int = 32):
    """Class 0 dark, class 1 bright, 8x8, with a little noise."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 2
    images = labels.view(-1, 1, 1, 1).float() * 200 + 20 + torch.randint(0, 30, (n, 3, 8, 8), generator=generator)
    return images.to(torch.uint8), labels


def test_tiny_victim_learns_a_separable_task():
    images, labels = separable_data()
    accelerator = Accelerator(cpu=True)
    victim = build_victim("resnet18", 2, width=0.125, image_size=8, seed=0)
    config = TrainConfig(epochs=8, batch_size=8, lr=0.05, seed=0)
    before = (predict(victim, images, accelerator=accelerator) == labels).float().mean().item()
    victim = train_victim(victim, images, labels, config, accelerator=accelerator, progress=False)
    after = (predict(victim, images, accelerator=accelerator) == labels).float().mean().item()
    assert before < 0.9
    assert after == 1.0


def test_training_is_deterministic_for_a_seed():
    images, labels = separable_data(16)
    config = TrainConfig(epochs=1, batch_size=8, seed=3)
    runs = [
        train_victim(build_victim("resnet18", 2, width=0.125, image_size=8, seed=3), images, labels, config,
                     progress=False)
        for _ in range(2)
    ]
    assert all(torch.equal(p, q) for p, q in zip(runs[0].parameters(), runs[1].parameters()))


@pytest.mark.parametrize("defense", ["mixup", "cutmix", "cutout", "gaussian", "jpeg", "grayscale", "pgd:steps=1"])
def test_training_runs_with_each_defence(defense):
    images, labels = separable_data(8)
    victim = build_victim("resnet18", 2, width=0.125, image_size=8, seed=0)
    start = [p.detach().clone() for p in victim.parameters()]
    victim = train_victim(
        victim, images, labels, TrainConfig(epochs=1, batch_size=4), defense=get_defense(defense), progress=False
    )
    assert any(not torch.equal(p, q) for p, q in zip(start, victim.parameters()))
    assert predict(victim, images, defense=get_defense(defense)).shape == (8,)


@pytest.mark.parametrize("name", ["efficientnet-b1", "regnetx-1.6gf"])
def test_other_victims_train_a_step(name):
    images, labels = separable_data(8)
    victim = build_victim(name, 2, width=0.125, image_size=8, seed=0)
    start = [p.detach().clone() for p in victim.parameters()]
    victim = train_victim(victim, images, labels, TrainConfig(epochs=1, batch_size=8), progress=False)
    assert any(not torch.equal(p, q) for p, q in zip(start, victim.parameters()))


def test_training_input_errors():
    images, labels = separable_data(8)
    victim = build_victim("resnet18", 2, width=0.125, image_size=8)
    config = TrainConfig(epochs=1, batch_size=4)
    with pytest.raises(ValueError, match="labels must be in"):
        train_victim(victim, images, labels + 1, config, progress=False)
    with pytest.raises(ValueError, match="8 images but 7 labels"):
        train_victim(victim, images, labels[:7], config, progress=False)
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="Unknown augmentation"):
        TrainConfig(augment="autoaugment")


def test_train_and_predict_records_every_epoch_without_changing_training():
    """The per-epoch evaluation must not change training: the last epoch's predictions equal
    those of the same victim trained by train_victim and scored by predict."""
    from uc_datasets.evaluation.victims import predict, train_and_predict

    x = torch.randint(0, 256, (24, 3, 8, 8), dtype=torch.uint8)
    y = torch.arange(24) % 3
    config = TrainConfig(epochs=3, batch_size=8)
    per_epoch = train_and_predict(build_victim("resnet18", 3, width=0.125, image_size=8, seed=0), x, y, config, x,
                                  progress=False)
    assert len(per_epoch) == 3 and all(p.shape == (24,) for p in per_epoch)
    trained = train_victim(build_victim("resnet18", 3, width=0.125, image_size=8, seed=0), x, y, config,
                           progress=False)
    assert torch.equal(per_epoch[-1], predict(trained, x))


def test_evaluation_steps_add_points_inside_the_first_epochs():
    from uc_datasets.evaluation.victims import evaluation_steps

    assert evaluation_steps(31, 12) == [31 * e for e in range(1, 13)]
    steps = evaluation_steps(31, 12, per_epoch=4, early_epochs=3)
    assert steps[:12] == [8, 16, 23, 31, 39, 47, 54, 62, 70, 78, 85, 93] and steps[-1] == 372
    assert len([s for s in steps if s <= 93]) == 12 and len(steps) == 12 + 9
    with pytest.raises(ValueError, match="per_epoch must be >= 1"):
        evaluation_steps(31, 12, per_epoch=0)


def test_predicting_at_steps_does_not_change_training():
    """Points inside epochs are read from the model being trained: the final point equals a plain
    training's final predictions, and every asked step is recorded, several per early epoch."""
    from uc_datasets.evaluation.victims import predict, predict_during_training

    x = torch.randint(0, 256, (24, 3, 8, 8), dtype=torch.uint8)
    y = torch.arange(24) % 3
    config = TrainConfig(epochs=3, batch_size=4)  # 6 steps an epoch
    points = predict_during_training(build_victim("resnet18", 3, width=0.125, image_size=8, seed=0), x, y, config, x,
                                     per_epoch=3, early_epochs=2, progress=False)
    assert [s for s, _ in points] == [2, 4, 6, 8, 10, 12, 18]
    trained = train_victim(build_victim("resnet18", 3, width=0.125, image_size=8, seed=0), x, y, config,
                           progress=False)
    assert torch.equal(points[-1][1], predict(trained, x))
    assert not all(torch.equal(points[0][1], p) for _, p in points[1:])  # the model changes between points
