from lorawb.words import noun, plural


def test_plural_counts_the_noun_right():
    assert plural(1, "caption") == "1 caption"
    assert plural(0, "caption") == "0 captions"
    assert plural(2, "image") == "2 images"
    assert plural(1, "match", "matches") == "1 match" and plural(3, "match", "matches") == "3 matches"
    assert noun(1, "file") == "file" and noun(5, "file") == "files"
