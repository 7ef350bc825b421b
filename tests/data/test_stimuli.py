"""Stimulus photos from the wheels, expanded by seeded crops, flips and colour jitter."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.transform import resize

from brain2img.data.simulated.stimuli import SOURCE_NAMES, load_source_photos, make_stimuli


def test_eleven_colour_source_photos():
    photos = load_source_photos()
    assert len(photos) == len(SOURCE_NAMES) == 11
    for name, photo in zip(SOURCE_NAMES, photos, strict=True):
        assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3, name
        assert min(photo.shape[:2]) >= 256, name
        # colour, not grey replicated in 3 channels
        assert np.abs(photo[..., 0].astype(int) - photo[..., 2]).mean() > 5, name
    left, right = photos[SOURCE_NAMES.index("motorcycle_left")], photos[SOURCE_NAMES.index("motorcycle_right")]
    assert not np.array_equal(left, right)


def test_shapes_labels_and_distinct_stimuli():
    stim = make_stimuli(n_stimuli=50, image_size=24, seed=3)
    assert stim.images.shape == (50, 24, 24, 3) and stim.images.dtype == np.uint8
    assert stim.labels.dtype == np.int64 and stim.names == SOURCE_NAMES
    counts = np.bincount(stim.labels, minlength=11)
    assert counts.min() >= 4 and counts.max() <= 5  # balanced over the 11 photos
    flat = stim.images.reshape(50, -1)
    assert len(np.unique(flat, axis=0)) == 50


def test_deterministic_for_a_seed():
    a, b = make_stimuli(30, 16, seed=1), make_stimuli(30, 16, seed=1)
    c = make_stimuli(30, 16, seed=2)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.images, c.images)


def test_stimulus_comes_from_its_labelled_photo():
    """Crops of the whole area (no flip or jitter) correlate best with their own photo resized by scikit-image (the
    two motorcycle views, a stereo pair, count as one photo)."""
    stim = make_stimuli(33, 32, seed=0, scale_range=(1.0, 1.0), flip_prob=0.0, jitter=0.0)
    refs = np.stack([resize(p, (32, 32), anti_aliasing=True).reshape(-1) for p in load_source_photos()])
    group = np.arange(11)
    group[SOURCE_NAMES.index("motorcycle_right")] = SOURCE_NAMES.index("motorcycle_left")
    for image, label in zip(stim.images, stim.labels, strict=True):
        r = [np.corrcoef(image.reshape(-1) / 255.0, ref)[0, 1] for ref in refs]
        assert group[int(np.argmax(r))] == group[label], (SOURCE_NAMES[label], np.round(r, 2))


def test_flips_and_jitter_change_images():
    base = make_stimuli(11, 16, seed=0, flip_prob=0.0, jitter=0.0)
    flipped = make_stimuli(11, 16, seed=0, flip_prob=1.0, jitter=0.0)
    np.testing.assert_array_equal(flipped.images, base.images[:, :, ::-1])
    jittered = make_stimuli(11, 16, seed=0, flip_prob=0.0, jitter=0.5)
    assert np.abs(jittered.images.astype(int) - base.images).mean() > 5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"n_stimuli": 5}, "n_stimuli"), ({"image_size": 8}, "image_size"), ({"scale_range": (0.0, 1.0)}, "scale_range"),
     ({"flip_prob": 1.5}, "flip_prob"), ({"jitter": 1.0}, "jitter")],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_stimuli(**kwargs)
