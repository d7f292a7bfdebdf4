"""Synthetic counterparts of sWUGGY, sBLIMP, (multi-speaker) sStoryCloze / tStoryCloze and
cross-modal StoryCloze.

Each item is ``{"id", "positive": [segments], "negative": [segments], "speaker", "variant"}``
where a segment is ``{"modality": "speech", "units": [...]}`` or
``{"modality": "text", "text": "..."}``. Both members of a pair use the same speaker; items
draw speakers at random (multi-speaker). Items come from fresh rng streams and skip any story
whose text is in ``exclude_texts`` (the training / validation corpora). Items of one benchmark are
distinct: a draw that repeats an earlier item's texts (word and non-word, sentence and violation,
story and endings) is skipped, so n items are n independent trials (binomial intervals).

``variant`` tells how the negative was made (e.g. 'obj' / 'col' / 'place' / 'pos' / 'N' for
sSC, 'swap' / 'article' / 'agreement' for sBLIMP, 'substitute' for sWUGGY, 'other_story'
for tSC); scorers may ignore it.
"""
from __future__ import annotations

import random
from typing import Callable, Iterable

from scaling.datadir import PAIR_BENCHMARKS
from scaling.datadir import BENCHMARKS as REGISTRY

from .speech import N_UNITS, phonemes, render
from .stories import Story, lexicon, make_story, norm, sblimp_violation

BENCHMARKS = PAIR_BENCHMARKS  # every pair benchmark of the registry (scaling.datadir) has a synthetic builder

_VOWELS = "aeiou"
_CONSONANTS = "bcdfghjklmnprstvwyz"


def _speech(words: list[str], speaker: int, rng: random.Random, n_units: int = N_UNITS) -> dict:
    return {"modality": "speech", "units": render(words, speaker, rng, n_units).units}


def _segment(text: str, modality: str, speaker: int, rng: random.Random, n_units: int = N_UNITS) -> dict:
    if modality == "text":
        return {"modality": "text", "text": text}
    return _speech(text.split(), speaker, rng, n_units)


def make_nonword(word: str, rng: random.Random, lex: frozenset[str] | None = None) -> str:
    """Substitute one letter (vowel for vowel, consonant for consonant) so that the result
    is not a lexicon word and is pronounced differently. Raises ValueError if impossible."""
    lex = lexicon() if lex is None else lex
    pron = phonemes(word)
    positions = list(range(len(word)))
    rng.shuffle(positions)
    for i in positions:
        c = word[i]
        pool = _VOWELS if c in _VOWELS else _CONSONANTS
        subs = [x for x in pool if x != c]
        rng.shuffle(subs)
        for x in subs:
            cand = word[:i] + x + word[i + 1:]
            if cand not in lex and phonemes(cand) != pron:
                return cand
    raise ValueError(f"no non-word for {word!r}")


def _fresh_story(rng: random.Random, exclude: set[str] | frozenset[str]) -> Story:
    while True:
        s = make_story(rng)
        if s.text not in exclude:
            return s


MAX_DRAWS = 50  # draws per item before a builder gives up finding a new distinct item


def _distinct(seen: set, key, name: str, i: int, tries: int) -> bool:
    """True (and remembered) when ``key`` is new; raises once ``tries`` draws in a row repeated."""
    if key not in seen:
        seen.add(key)
        return True
    if tries >= MAX_DRAWS:
        raise ValueError(f"{name}: cannot draw a distinct item {i} in {MAX_DRAWS} tries; ask for fewer items")
    return False


def build_swuggy(n: int, n_speakers: int, rng: random.Random, exclude=frozenset(), n_units: int = N_UNITS) -> list[dict]:
    lex = lexicon()
    words = sorted(w for w in lex if len(w) >= 3 and w.isalpha())
    items, seen = [], set()
    for i in range(n):
        tries = 0
        while True:
            w = rng.choice(words)
            nw = make_nonword(w, rng, lex)
            tries += 1
            if _distinct(seen, (w, nw), "swuggy", i, tries):
                break
        spk = rng.randrange(n_speakers)
        items.append({"id": f"swuggy-{i:05d}", "positive": [_speech([w], spk, rng, n_units)],
                      "negative": [_speech([nw], spk, rng, n_units)], "speaker": spk,
                      "variant": "substitute", "words": [w, nw]})
    return items


def build_sblimp(n: int, n_speakers: int, rng: random.Random, exclude=frozenset(), n_units: int = N_UNITS) -> list[dict]:
    items, seen = [], set()
    for i in range(n):
        tries = 0
        while True:
            story = _fresh_story(rng, exclude)
            sent = rng.choice(story.sentences)
            bad, kind = sblimp_violation(sent, rng)
            tries += 1
            if _distinct(seen, (sent, bad), "sblimp", i, tries):
                break
        spk = rng.randrange(n_speakers)
        items.append({"id": f"sblimp-{i:05d}", "positive": [_speech(sent.split(), spk, rng, n_units)],
                      "negative": [_speech(bad.split(), spk, rng, n_units)], "speaker": spk,
                      "variant": kind, "texts": [sent, bad]})
    return items


def _storycloze(name: str) -> Callable[..., list[dict]]:
    ctx_mod, end_mod = REGISTRY[name].modalities
    topic = name == "tsc"

    def build(n: int, n_speakers: int, rng: random.Random, exclude=frozenset(), n_units: int = N_UNITS) -> list[dict]:
        items, seen = [], set()
        for i in range(n):
            tries = 0
            while True:
                story = _fresh_story(rng, exclude)
                if topic:
                    other = _fresh_story(rng, exclude)
                    while norm(other.ctx["N"]) == norm(story.ctx["N"]) or other.ending == story.ending:
                        other = _fresh_story(rng, exclude)
                    wrong, kind = other.ending, "other_story"
                else:
                    wrong, kind = story.wrong_ending(rng)
                tries += 1
                if _distinct(seen, story.context, name, i, tries):
                    break
            spk = rng.randrange(n_speakers)
            ctx_seg = _segment(story.context, ctx_mod, spk, rng, n_units)
            items.append({
                "id": f"{name}-{i:05d}",
                "positive": [ctx_seg, _segment(story.ending, end_mod, spk, rng, n_units)],
                "negative": [ctx_seg, _segment(wrong, end_mod, spk, rng, n_units)],
                "speaker": spk, "variant": kind,
                "texts": [story.context, story.ending, wrong],
            })
        return items

    return build


def builder(name: str) -> Callable[..., list[dict]]:
    """The synthetic builder of a registered benchmark, by its family."""
    family = REGISTRY[name].family
    return {"lexical": build_swuggy, "syntactic": build_sblimp}.get(family) or _storycloze(name)


def build_benchmarks(n_items: int, n_speakers: int, seed: int,
                     exclude_texts: Iterable[str] = (),
                     names: Iterable[str] = BENCHMARKS, n_units: int = N_UNITS) -> dict[str, list[dict]]:
    """All benchmarks, each from its own rng stream ``f"{seed}:bench:{name}"``, spoken over an inventory
    of ``n_units`` units."""
    exclude = exclude_texts if isinstance(exclude_texts, (set, frozenset)) else set(exclude_texts)
    out = {}
    for name in names:
        rng = random.Random(f"{seed}:bench:{name}")
        out[name] = builder(name)(n_items, n_speakers, rng, exclude, n_units)
    return out
