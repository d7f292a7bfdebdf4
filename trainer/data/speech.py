"""Render words as HuBERT-like acoustic units (a stand-in for mHuBERT-25Hz + k-means 500).

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
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

N_UNITS = 500
FRAME_S = 0.04            # 25 Hz
PHONOLOGY_SEED = 2504_02398
N_SILENCE = 4

VOWELS = ("A", "E", "I", "O", "U", "EE", "OO", "OU", "OW", "AI", "ER", "AR", "OR")
CONSONANTS = ("B", "D", "F", "G", "H", "J", "K", "L", "M", "N", "P", "R", "S", "T", "V", "W",
              "Y", "Z", "TH", "SH", "CH", "NG")
PHONEMES = VOWELS + CONSONANTS

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


class _Phonology:
    """Fixed tables shared by all corpora."""

    def __init__(self) -> None:
        rng = random.Random(PHONOLOGY_SEED)
        pool = list(range(N_UNITS))
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
        # two allophone alternatives per sub-state, from the remaining inventory
        self.alternatives: list[tuple[int, int]] = []
        for _ in self.canonical:
            if len(free) >= 2:
                self.alternatives.append((free.pop(), free.pop()))
            else:
                self.alternatives.append((rng.randrange(N_UNITS), rng.randrange(N_UNITS)))
        # acoustic neighbours: for a sub-state unit, its allophones and canonical siblings;
        # for other units, three fixed random non-silence units
        nb: dict[int, list[int]] = {}
        for s, u in enumerate(self.canonical):
            a, b = self.alternatives[s]
            for x in (u, a, b):
                nb.setdefault(x, []).extend(y for y in (u, a, b) if y != x)
        sil = set(self.silence)
        non_sil = [u for u in range(N_UNITS) if u not in sil]
        self.neighbours: list[tuple[int, ...]] = []
        for u in range(N_UNITS):
            cand = [x for x in nb.get(u, []) if x != u]
            while len(cand) < 3:
                x = rng.choice(non_sil)
                if x != u:
                    cand.append(x)
            self.neighbours.append(tuple(dict.fromkeys(cand)))


PHONOLOGY = _Phonology()


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
def speaker_profile(speaker: int) -> Speaker:
    if not isinstance(speaker, int) or isinstance(speaker, bool) or speaker < 0:
        raise ValueError(f"speaker must be an int >= 0, got {speaker!r}")
    rng = random.Random(f"{PHONOLOGY_SEED}:speaker:{speaker}")
    ph = PHONOLOGY
    units = tuple(ph.alternatives[s][rng.randrange(2)] if rng.random() < 0.35 else u
                  for s, u in enumerate(ph.canonical))
    p_long = rng.uniform(0.1, 0.4)
    return Speaker(speaker=speaker, units=units, p_long=p_long, p_longer=p_long * 0.3,
                   p_noise=rng.uniform(0.02, 0.05), p_pause=rng.uniform(0.15, 0.45),
                   silence=rng.choice(ph.silence))


@lru_cache(maxsize=100_000)
def _word_substates(word: str) -> tuple[int, ...]:
    sub = PHONOLOGY.substates
    return tuple(s for p in phonemes(word) for s in sub[p])


@lru_cache(maxsize=200_000)
def word_units(word: str, speaker: int) -> tuple[int, ...]:
    """Noise-free, one-frame-per-sub-state unit sequence of a word for a speaker."""
    table = speaker_profile(speaker).units
    return tuple(table[s] for s in _word_substates(word))


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


def render(words: list[str], speaker: int, rng: random.Random) -> Rendered:
    """Speak ``words`` in ``speaker``'s voice; randomness (durations, noise, pauses) from rng."""
    prof = speaker_profile(speaker)
    neighbours = PHONOLOGY.neighbours
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
        for u in word_units(w, speaker):
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
