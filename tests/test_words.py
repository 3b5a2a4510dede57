from lorawb.words import noun, plural


def test_plural_counts_the_noun_right():
    assert plural(1, "caption") == "1 caption"
    assert plural(0, "caption") == "0 captions"
    assert plural(2, "image") == "2 images"
    assert plural(1, "match", "matches") == "1 match" and plural(3, "match", "matches") == "3 matches"
    assert noun(1, "file") == "file" and noun(5, "file") == "files"


def test_a_file_name_fitted_keeps_what_tells_it_apart():
    from lorawb.words import fit_name

    assert fit_name("img_001.png", 12) == "img_001.png"
    assert fit_name("mira_01_forest.png", 14) == "mira_01_forest"  # the extension goes first
    assert fit_name("mira_01_forest.png", 12) == "mira_01…rest"  # its number and its end stay
    names = [fit_name(f"tour-matrix-3fa2c1d9e{i}.png", 12) for i in range(3)]
    assert len(set(names)) == 3 and all(len(n) == 12 for n in names)  # promoted cells stay apart


def test_words_fitted_by_whole_words():
    from lorawb.words import fit_words

    assert fit_words("id .67 pf .80", 13) == "id .67 pf .80"
    assert fit_words("id .67 pf .80", 12) == "id.67 pf.80"  # keys and numbers tighten first
    assert fit_words("id .67 leak .05 pf .80", 12) == "id.67"  # then whole words go, never half a number
