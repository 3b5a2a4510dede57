from PIL import Image

from lorawb.core.thumbs import ThumbCache


def test_thumbnail_made_once_and_refreshed_on_change(tmp_path):
    img = tmp_path / "a.png"
    Image.new("RGB", (400, 200), "red").save(img)
    cache = ThumbCache(tmp_path / ".lorawb")
    assert cache.cached(img, (64, 64)) is None
    thumb = cache.get(img, (64, 64))
    with Image.open(thumb) as t:
        assert t.size == (64, 32)
    assert cache.cached(img, (64, 64)) == thumb
    Image.new("RGB", (100, 300), "blue").save(img)
    import os

    os.utime(img, ns=(1, 1))
    assert cache.cached(img, (64, 64)) is None
    with Image.open(cache.get(img, (64, 64))) as t:
        assert t.size[1] == 64 and t.size[0] < 64
