"""Render words as HuBERT-like acoustic units (a stand-in for mHuBERT-25Hz + k-means 500, or any
other inventory size of at least :data:`MIN_UNITS`).

Pipeline per word:
  spelling -> pseudo-phonemes (letters/digraphs, 35 phonemes) -> sub-states (1-3 per
  phoneme) -> unit ids. The phonology (phoneme inventory, sub-state canonical ids, the
  alternative "allophone" ids and the "nearby unit" confusion table) comes from a FIXED seed
  so that every corpus, whatever its seed, shares it. A speaker (int >= 0) is also derived
  from the fixed seed: it swaps some sub-states for an allophone, has its own speaking rate,
  noise level, pause probability and silence unit.

Frames are 25 Hz (40 ms). Each sub-state lasts 1-3 frames; a frame may be replaced by a
nearby unit (noise); silence frames may separate words and always open and close the
utterance. Consecutive equal frames are then collapsed (``units`` + ``durations`` in frames),
as done for real HuBERT units. Word times come from frame positions, so they stay exact even
when a collapse merges the last frame of a word with the first of the next.

The phonology is built for an inventory size (``n_units``, default 500; one cached table per size):
the same draws from the fixed seed, over units 0..n_units-1.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

from scaling.datadir import MAX_UNITS, N_UNITS
from scaling.errors import ConfigError

FRAME_S = 0.04            # 25 Hz
PHONOLOGY_SEED = 2504_02398
N_SILENCE = 4

VOWELS = ("A", "E", "I", "O", "U", "EE", "OO", "OU", "OW", "AI", "ER", "AR", "OR")
CONSONANTS = ("B", "D", "F", "G", "H", "J", "K", "L", "M", "N", "P", "R", "S", "T", "V", "W",
              "Y", "Z", "TH", "SH", "CH", "NG")
PHONEMES = VOWELS + CONSONANTS
#: The smallest inventory the phonology fits in: its silence units plus distinct canonical units for
#: the most sub-states it can draw (3 per vowel, 2 per consonant); allophones and neighbours may
#: share units, canonical sub-states may not (two phonemes would sound the same).
MIN_UNITS = N_SILENCE + 3 * len(VOWELS) + 2 * len(CONSONANTS)

_DIGRAPHS = {"th": ("TH",), "sh": ("SH",), "ch": ("CH",), "ng": ("NG",), "ck": ("K",),
             "ph": ("F",), "wh": ("W",), "qu": ("K", "W"), "ee": ("EE",), "ea": ("EE",),
             "oo": ("OO",), "ou": ("OU",), "ow": ("OW",), "ai": ("AI",), "ay": ("AI",),
             "er": ("ER",), "ar": ("AR",), "or": ("OR",)}
_LETTERS = {c: (c.upper(),) for c in "abdefghijklmnoprstuvwyz"}
_LETTERS.update({"c": ("K",), "q": ("K",), "x": ("K", "S")})


def phonemes(word: str) -> tuple[str, ...]:
    """Pseudo-pronunciation: lower-case letters only; digraphs first; doubled phonemes merged.

    A word without letters is pronounced as a single schwa-like ``ER`` so that every word
    has a non-empty duration.
    """
    w = "".join(c for c in word.lower() if "a" <= c <= "z")
    out: list[str] = []
    i = 0
    while i < len(w):
        ph = _DIGRAPHS.get(w[i:i + 2])
        if ph is not None:
            i += 2
        else:
            ph = _LETTERS[w[i]]
            i += 1
        for p in ph:
            if not out or out[-1] != p:
                out.append(p)
    return tuple(out) if out else ("ER",)


def check_inventory(n_units, *, source: str | None = None, field: str = "n_units") -> int:
    """``n_units`` when the phonology fits in it, else a ConfigError naming the field and the minimum."""
    if not isinstance(n_units, int) or isinstance(n_units, bool) or not MIN_UNITS <= n_units <= MAX_UNITS:
        raise ConfigError(f"must be an integer in {MIN_UNITS}..{MAX_UNITS}: the synthetic phonology needs {N_SILENCE} "
                          f"silence units + up to {MIN_UNITS - N_SILENCE} distinct canonical sub-states of its "
                          f"{len(PHONEMES)} phonemes", source=source, field=field, value=n_units)
    return n_units


class _Phonology:
    """Fixed tables shared by all corpora of one inventory size."""

    def __init__(self, n_units: int = N_UNITS) -> None:
        self.n_units = n_units = check_inventory(n_units)
        rng = random.Random(PHONOLOGY_SEED)
        pool = list(range(n_units))
        rng.shuffle(pool)
        self.silence = tuple(sorted(pool[:N_SILENCE]))
        free = pool[N_SILENCE:]
        self.substates: dict[str, tuple[int, ...]] = {}   # phoneme -> sub-state indices
        self.canonical: list[int] = []                     # sub-state index -> unit id
        for ph in PHONEMES:
            n = rng.choice((2, 3)) if ph in VOWELS else rng.choice((1, 2))
            idx = []
            for _ in range(n):
                idx.append(len(self.canonical))
                self.canonical.append(free.pop())
            self.substates[ph] = tuple(idx)
        # two allophone alternatives per sub-state, from the remaining inventory; once it is spent (a
        # small inventory), any other non-silence unit (500 units never get there: 253 at most are taken)
        sil = set(self.silence)
        self.alternatives: list[tuple[int, int]] = []
        for u in self.canonical:
            if len(free) >= 2:
                self.alternatives.append((free.pop(), free.pop()))
            else:
                others = [x for x in range(n_units) if x != u and x not in sil]
                self.alternatives.append((rng.choice(others), rng.choice(others)))
        # acoustic neighbours: for a sub-state unit, its allophones and canonical siblings;
        # for other units, three fixed random non-silence units
        nb: dict[int, list[int]] = {}
        for s, u in enumerate(self.canonical):
            a, b = self.alternatives[s]
            for x in (u, a, b):
                nb.setdefault(x, []).extend(y for y in (u, a, b) if y != x)
        non_sil = [u for u in range(n_units) if u not in sil]
        self.neighbours: list[tuple[int, ...]] = []
        for u in range(n_units):
            cand = [x for x in nb.get(u, []) if x != u]
            while len(cand) < 3:
                x = rng.choice(non_sil)
                if x != u:
                    cand.append(x)
            self.neighbours.append(tuple(dict.fromkeys(cand)))


@lru_cache(maxsize=None)
def phonology(n_units: int = N_UNITS) -> _Phonology:
    """The phonology of an inventory of ``n_units`` units (built once per size)."""
    return _Phonology(n_units)


PHONOLOGY = phonology(N_UNITS)


@dataclass(frozen=True)
class Speaker:
    speaker: int
    units: tuple[int, ...]        # sub-state index -> this speaker's unit id
    p_long: float                 # chance a sub-state gets a 2nd frame (speaking rate)
    p_longer: float               # chance of a 3rd frame
    p_noise: float                # per-frame chance the unit is replaced by a neighbour
    p_pause: float                # chance of silence between two words
    silence: int                  # this speaker's silence unit


@lru_cache(maxsize=None)
def speaker_profile(speaker: int, n_units: int = N_UNITS) -> Speaker:
    if not isinstance(speaker, int) or isinstance(speaker, bool) or speaker < 0:
        raise ValueError(f"speaker must be an int >= 0, got {speaker!r}")
    rng = random.Random(f"{PHONOLOGY_SEED}:speaker:{speaker}")
    ph = phonology(n_units)
    units = tuple(ph.alternatives[s][rng.randrange(2)] if rng.random() < 0.35 else u
                  for s, u in enumerate(ph.canonical))
    p_long = rng.uniform(0.1, 0.4)
    return Speaker(speaker=speaker, units=units, p_long=p_long, p_longer=p_long * 0.3,
                   p_noise=rng.uniform(0.02, 0.05), p_pause=rng.uniform(0.15, 0.45),
                   silence=rng.choice(ph.silence))


@lru_cache(maxsize=100_000)
def _word_substates(word: str, n_units: int = N_UNITS) -> tuple[int, ...]:
    sub = phonology(n_units).substates
    return tuple(s for p in phonemes(word) for s in sub[p])


@lru_cache(maxsize=200_000)
def word_units(word: str, speaker: int, n_units: int = N_UNITS) -> tuple[int, ...]:
    """Noise-free, one-frame-per-sub-state unit sequence of a word for a speaker."""
    table = speaker_profile(speaker, n_units).units
    return tuple(table[s] for s in _word_substates(word, n_units))


@dataclass
class Rendered:
    units: list[int]          # deduplicated unit ids (no two consecutive equal)
    durations: list[int]      # frames per unit (>= 1)
    starts: list[float]       # per word, seconds
    ends: list[float]

    @property
    def n_frames(self) -> int:
        return sum(self.durations)

    @property
    def seconds(self) -> float:
        return round(self.n_frames * FRAME_S, 2)


def render(words: list[str], speaker: int, rng: random.Random, n_units: int = N_UNITS) -> Rendered:
    """Speak ``words`` in ``speaker``'s voice over an inventory of ``n_units`` units; randomness
    (durations, noise, pauses) from rng."""
    prof = speaker_profile(speaker, n_units)
    neighbours = phonology(n_units).neighbours
    rand = rng.random
    p_long, p_longer, p_noise, p_pause, sil = (prof.p_long, prof.p_longer, prof.p_noise,
                                               prof.p_pause, prof.silence)
    units: list[int] = []
    durs: list[int] = []
    starts: list[float] = []
    ends: list[float] = []
    t = 0

    def emit(u: int, n: int) -> None:
        if units and units[-1] == u:
            durs[-1] += n
        else:
            units.append(u)
            durs.append(n)

    lead = 1 + (rand() < 0.5)
    emit(sil, lead)
    t += lead
    for wi, w in enumerate(words):
        if wi and rand() < p_pause:
            n = 1 + (rand() < 0.3)
            emit(sil, n)
            t += n
        starts.append(round(t * FRAME_S, 2))
        for u in word_units(w, speaker, n_units):
            d = 1
            if rand() < p_long:
                d += 1
                if rand() < p_longer:
                    d += 1
            if rand() < p_noise * d:
                k = int(rand() * d)
                nbs = neighbours[u]
                x = nbs[int(rand() * len(nbs))]
                if k:
                    emit(u, k)
                emit(x, 1)
                if d - k - 1:
                    emit(u, d - k - 1)
            else:
                emit(u, d)
            t += d
        ends.append(round(t * FRAME_S, 2))
    tail = 1 + (rand() < 0.5)
    emit(sil, tail)
    return Rendered(units=units, durations=durs, starts=starts, ends=ends)
