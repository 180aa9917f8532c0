import torch

from bratsx.trainer.augment import augment_batch
from bratsx.trainer.config import AugmentConfig


def batch():
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (2, 8, 10, 12), generator=generator, dtype=torch.uint8)
    images = torch.stack([labels.float(), torch.randn(2, 8, 10, 12, generator=generator)], dim=1)
    return images, labels


def test_same_seed_and_step_augment_identically_and_other_steps_differ():
    config = AugmentConfig(flip=0.5, scale_intensity=1.0, gamma=1.0, noise=1.0)
    a = augment_batch(*batch(), config, seed=1, step=5)
    b = augment_batch(*batch(), config, seed=1, step=5)
    c = augment_batch(*batch(), config, seed=1, step=6)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_spatial_changes_keep_images_and_labels_aligned():
    only_spatial = AugmentConfig(flip=0.5, scale_intensity=0, shift_intensity=0, gamma=0, noise=0)
    for step in range(6):
        images, labels = augment_batch(*batch(), only_spatial, seed=0, step=step)
        assert torch.equal(images[:, 0], labels.float())  # channel 0 was a copy of the labels


def test_everything_off_changes_nothing():
    off = AugmentConfig(flip=0, scale_intensity=0, shift_intensity=0, gamma=0, noise=0, spatial=0)
    images, labels = batch()
    out_images, out_labels = augment_batch(images.clone(), labels.clone(), off, seed=0, step=0)
    assert torch.equal(out_images, images) and torch.equal(out_labels, labels)


def test_rotation_keeps_label_values_and_shape():
    rotate = AugmentConfig(flip=0, scale_intensity=0, shift_intensity=0, gamma=0, noise=0, spatial=1.0)
    images, labels = augment_batch(*batch(), rotate, seed=0, step=1)
    assert images.shape == (2, 2, 8, 10, 12) and labels.shape == (2, 8, 10, 12)
    assert set(labels.unique().tolist()) <= {0, 1, 2, 3}
