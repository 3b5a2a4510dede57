"""The toy base model's tokenizer: a CLIP BPE tokenizer whose every toy-world word is one token.

``write_tokenizer`` writes it (vocab.json, merges.txt, tokenizer_config.json); ``CaptionIds``
assembles caption token ids from per-tag ids, equal to the tokenizer's own output but fast.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from lorawb.core.fsutil import atomic_write_text
from lorawb.toyworld import world
from lorawb.toyworld.tiny import SPECIAL_BOS, SPECIAL_EOS, bytes_to_unicode

MAX_LENGTH = 77
# Words the tokenizer knows but pretraining never uses: triggers for LoRAs start from them
# ("zkx_mira" is zkx + _ + mira), and a few generic caption words so prompts typed by hand
# tokenize to words rather than letters.
RARE_WORDS = ["zkx", "mira", "qvr", "ohwx", "sks", "xyz", "vlx"]
GENERIC_WORDS = [
    "a",
    "an",
    "the",
    "of",
    "in",
    "on",
    "at",
    "with",
    "and",
    "girl",
    "boy",
    "woman",
    "man",
    "person",
    "character",
    "solo",
    "portrait",
    "full",
    "body",
    "standing",
    "sitting",
    "smile",
    "looking",
    "viewer",
    "background",
    "simple",
    "detailed",
    "quality",
    "best",
]


def tokenizer_words() -> list[str]:
    words: list[str] = []
    for w in world.vocabulary() + RARE_WORDS + GENERIC_WORDS:
        if w not in words:
            words.append(w)
    return words


def write_tokenizer(folder: Path) -> None:
    """A CLIP BPE tokenizer whose whole words are single tokens: every byte, then a merge chain per word."""
    enc = bytes_to_unicode()
    vocab: dict[str, int] = {}

    def add(tok: str) -> None:
        vocab.setdefault(tok, len(vocab))

    for c in enc.values():
        add(c)
    for c in enc.values():
        add(c + "</w>")
    words = []
    for word in tokenizer_words():
        symbols = [enc[b] for b in word.encode("utf-8")]
        symbols[-1] += "</w>"
        words.append(symbols)
    merges = merge_chains(words)
    for a, b in merges:
        add(a + b)
    add(SPECIAL_BOS)
    add(SPECIAL_EOS)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "vocab.json", json.dumps(vocab, ensure_ascii=False) + "\n")
    atomic_write_text(folder / "merges.txt", "#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MAX_LENGTH,
        "bos_token": SPECIAL_BOS,
        "eos_token": SPECIAL_EOS,
        "unk_token": SPECIAL_EOS,
        "pad_token": SPECIAL_EOS,
        "do_lower_case": True,
    }
    atomic_write_text(folder / "tokenizer_config.json", json.dumps(config, indent=2) + "\n")


def merge_chains(words: Iterable[list[str]]) -> list[tuple[str, str]]:
    """BPE merges that turn each word (a list of symbols) into one token, in rank order.

    Merges apply by rank across all words, so a chain written for one word can be cut by an
    earlier merge of another ("re" of "red" inside "forest"). Run BPE as the tokenizer will
    and append a merge of the first two pieces until the word comes out whole.
    """
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for symbols in words:
        while True:
            symbols = _bpe(symbols, ranks)
            if len(symbols) == 1:
                break
            pair = (symbols[0], symbols[1])
            ranks[pair] = len(merges)
            merges.append(pair)
    return merges


def _bpe(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair merging as CLIP does it: repeatedly merge the adjacent pair of lowest rank."""
    symbols = list(symbols)
    while len(symbols) > 1:
        pairs = [(ranks.get((a, b)), i) for i, (a, b) in enumerate(zip(symbols[:-1], symbols[1:], strict=True))]
        ranked = [(r, i) for r, i in pairs if r is not None]
        if not ranked:
            break
        best = min(ranked)[0]
        out: list[str] = []
        i = 0
        while i < len(symbols):
            if i + 1 < len(symbols) and ranks.get((symbols[i], symbols[i + 1])) == best:
                out.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                out.append(symbols[i])
                i += 1
        symbols = out
    return symbols


class CaptionIds:
    """Token ids of captions assembled from per-tag ids (fast, and equal to the tokenizer's output)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tok = tokenizer
        self.bos = tokenizer.bos_token_id
        self.eos = tokenizer.eos_token_id
        self.comma = tokenizer(",", add_special_tokens=False).input_ids
        self.cache: dict[str, list[int]] = {}

    def tag(self, tag: str) -> list[int]:
        ids = self.cache.get(tag)
        if ids is None:
            ids = self.cache[tag] = list(self.tok(tag, add_special_tokens=False).input_ids)
        return ids

    def ids(self, tags: Sequence[str]) -> list[int]:
        out = [self.bos]
        for i, t in enumerate(tags):
            if i:
                out += self.comma
            out += self.tag(t)
        out = out[: MAX_LENGTH - 1] + [self.eos]
        return out + [self.eos] * (MAX_LENGTH - len(out))
