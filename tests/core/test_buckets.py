from lorawb.core.buckets import make_buckets, nearest_bucket


def test_buckets_are_multiples_of_64_within_area():
    for w, h in make_buckets(512):
        assert w % 64 == 0 and h % 64 == 0
        assert w * h <= 512 * 512


def test_square_and_portrait_and_landscape():
    assert nearest_bucket(1000, 1000, 512) == (512, 512)
    w, h = nearest_bucket(600, 1200, 512)
    assert h > w and abs(w / h - 0.5) < 0.1
    w, h = nearest_bucket(1920, 1080, 1024)
    assert w > h and abs(w / h - 16 / 9) < 0.15


def test_resolution_below_step_is_a_clear_error():
    import pytest

    with pytest.raises(ValueError, match="bucket step"):
        nearest_bucket(32, 32, 32, step=64)
    assert nearest_bucket(32, 32, 32, step=8) == (32, 32)
