"""Procedural short stories (a stand-in for sTinyStories) with persistent entities.

A story is built from a fixed grammar: a hero (name, gender, kind, trait), a home place,
an optional friend, and one object (quality + colour + noun) that is found, lost and
recovered. Entities persist: the hero named in the first sentence, the place, and the
object found in the middle are the ones referred to by the ending. Every ending template
mentions the hero's name and the object, so a model can only score the coherent ending
above a wrong one by tracking entities across the context.

Words are whitespace separated; punctuation sticks to its word (``forest.``, ``day,``).
Everything is driven by a caller-supplied ``random.Random`` and is deterministic.
"""
from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass, field

NAMES_F = ("Lily", "Mia", "Emma", "Anna", "Sara", "Lucy", "Zoe", "Ella", "Rosa", "Nina",
           "Ruby", "Daisy", "Molly", "Kate", "Amy", "Grace", "Jane", "Sue", "Tina", "Luna")
NAMES_M = ("Tom", "Ben", "Max", "Sam", "Leo", "Jack", "Tim", "Finn", "Oscar", "Jake",
           "Bob", "Dan", "Eli", "Hugo", "Ivan", "Joe", "Kai", "Noah", "Paul", "Rex")
KINDS = ("fox", "bunny", "cat", "dog", "bear", "mouse", "duck", "frog", "owl", "bird", "pig",
         "lion", "tiger", "turtle", "horse", "puppy", "kitten", "squirrel", "deer", "goat",
         "monkey", "elephant", "kid", "farmer", "baker", "sailor")
TRAITS = ("brave", "kind", "little", "curious", "shy", "clever", "silly", "gentle", "friendly",
          "tiny", "young", "funny", "quiet", "busy", "smart", "lazy", "bold", "sleepy",
          "honest", "polite", "playful", "careful", "eager", "old")
COLOURS = ("red", "blue", "green", "yellow", "pink", "purple", "orange", "white", "black",
           "brown", "gold", "silver")
QUALITIES = ("big", "small", "shiny", "soft", "round", "heavy", "long", "short", "new", "odd")
OBJECTS = ("ball", "kite", "hat", "box", "book", "cup", "key", "ring", "drum", "boat", "shell",
           "stone", "feather", "balloon", "apple", "egg", "umbrella", "bell", "coin", "flower",
           "toy", "car", "bucket", "blanket", "basket", "spoon", "scarf", "sock", "shoe", "map",
           "lamp", "brush", "pencil", "whistle", "button", "candle", "rope", "clock")
PLACES = ("forest", "park", "garden", "beach", "farm", "village", "meadow", "river", "castle",
          "school", "hill", "lake", "town", "jungle", "zoo", "barn", "cave", "island", "pond",
          "valley", "field", "yard", "mountain", "harbor")
EMO_POS = ("happy", "glad", "excited", "proud", "calm", "thankful", "joyful", "delighted")
EMO_NEG = ("sad", "scared", "worried", "angry", "lonely", "upset", "nervous", "grumpy")
ACTIVITIES = ("play", "run", "sing", "dance", "read", "draw", "jump", "swim", "walk", "explore",
              "climb", "hop", "rest", "dig")
WHENS = ("One sunny morning", "One rainy afternoon", "One cold day", "One windy evening",
         "One bright day", "Early one morning", "Late one afternoon", "One warm night")
SPOTS = ("under a big tree", "behind a bush", "in the tall grass", "next to a fence",
         "on a bench", "near a log", "in the mud", "under some leaves", "by the gate",
         "in a hole", "beside a path", "on a rock")

# Sentence templates per slot. Fields: N hero name, P/p He/he, poss his/her, kind, trait,
# place, act, act2, F friend, fkind, ftrait, when, spot, quality, col, obj, pos, neg, pos1.
# ``a_<field>`` is the article (a/an) agreeing with that field.
T_INTRO = (
    "Once upon a time, there was {a_trait} {trait} {kind} named {N}.",
    "There once lived {a_trait} {trait} little {kind} called {N}.",
    "{N} was {a_trait} {trait} {kind} who lived in the {place}.",
    "Long ago, {a_trait} {trait} {kind} named {N} lived by the {place}.",
)
T_SETTING = (
    "Every day, {N} liked to {act} in the {place}.",
    "{P} loved to {act} in the {place} all day long.",
    "{N} lived near the {place} with {poss} family.",
    "The {place} was the favorite place of {N}.",
)
T_TRAIT = (
    "{P} also liked to {act2} with {poss} family.",
    "Everyone in the {place} knew that {N} was very {trait}.",
    "{P} dreamed of big adventures every night.",
    "{N} always wanted to see new things.",
)
T_FRIEND = (
    "{P} had a good friend, {a_ftrait} {ftrait} {fkind} named {F}.",
    "{N} often played with {F}, {a_ftrait} {ftrait} {fkind}.",
    "{P} had a best friend called {F}, who was {a_fkind} {fkind}.",
)
T_FIND = (
    "{when}, {N} found {a_quality} {quality} {col} {obj} {spot}.",
    "{when}, {N} saw {a_col} {col} {obj} {spot}.",
    "{when}, {N} found {a_col} {col} {obj} {spot}.",
    "{when}, {p} saw {a_quality} {quality} {col} {obj} {spot}.",
)
T_REACT_F = (
    "{P} felt {pos1} and showed the {obj} to {F}.",
    "{N} and {F} looked at the {col} {obj} for a long time.",
)
T_REACT = (
    "{N} was so {pos1} that {p} jumped up and down.",
    "{P} picked up the {obj} and smiled.",
    "The {col} {obj} was the best thing {p} had ever seen.",
)
T_PROBLEM = (
    "But then the wind blew the {obj} up into a tall tree.",
    "Suddenly, the {obj} fell into the deep water.",
    "But a naughty crow took the {obj} and flew away.",
    "Then {N} dropped the {obj} and it rolled far away.",
    "Oh no, the {obj} got stuck in the thick mud.",
    "Later that day, {N} lost the {obj} and felt {neg}.",
)
T_HELP_F = (
    "{F} came to help and they looked everywhere.",
    "{N} asked {F} for help, and {F} said yes.",
)
T_HELP = (
    "{N} did not give up and tried again.",
    "{P} felt {neg}, but then {p} had a good idea.",
    "{P} looked high and low for a long time.",
)
T_END_F = (
    "{N} and {F} played with the {col} {obj} until dark.",
    "{N} thanked {F} and held the {col} {obj} tight, feeling {pos}.",
)
T_END = (
    "In the end, {N} got the {col} {obj} back and felt {pos}.",
    "At last, {N} found the {col} {obj} and smiled all day.",
    "{N} carried the {col} {obj} back to the {place} and felt {pos}.",
    "From then on, {N} kept the {col} {obj} safe and was {pos}.",
    "{N} hugged the {quality} {col} {obj} and felt {pos} again.",
)

_ALL_TEMPLATES = (T_INTRO, T_SETTING, T_TRAIT, T_FRIEND, T_FIND, T_REACT_F, T_REACT, T_PROBLEM,
                  T_HELP_F, T_HELP, T_END_F, T_END)
_WORD_LISTS = (NAMES_F, NAMES_M, KINDS, TRAITS, COLOURS, QUALITIES, OBJECTS, PLACES, EMO_POS,
               EMO_NEG, ACTIVITIES, WHENS, SPOTS, ("a", "an", "he", "she", "his", "her"))
# Which ending fields a wrong ending may contradict.
WRONG_KINDS = ("obj", "col", "place", "pos", "N")

_FIELD_RE = re.compile(r"\{(\w+)\}")
_STRIP = str.maketrans("", "", string.punctuation)


def norm(word: str) -> str:
    """Lower-case and strip punctuation: the spoken form of a written word."""
    return word.translate(_STRIP).lower()


def article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def lexicon() -> frozenset[str]:
    """Every normalised word the grammar can produce."""
    global _LEXICON
    if _LEXICON is None:
        words: set[str] = set()
        for group in _ALL_TEMPLATES:
            for t in group:
                words.update(norm(w) for w in _FIELD_RE.sub(" ", t).split())
        for lst in _WORD_LISTS:
            for item in lst:
                words.update(norm(w) for w in item.split())
        words.discard("")
        _LEXICON = frozenset(words)
    return _LEXICON


_LEXICON: frozenset[str] | None = None


def _fill(template: str, ctx: dict) -> str:
    s = template.format(**ctx)
    return s[0].upper() + s[1:]


@dataclass
class Story:
    sentences: list[str]
    ctx: dict                  # entity values used by the templates
    ending_template: str
    slots: list[str] = field(default_factory=list)   # which slot produced each sentence

    @property
    def context(self) -> str:
        return " ".join(self.sentences[:-1])

    @property
    def ending(self) -> str:
        return self.sentences[-1]

    @property
    def text(self) -> str:
        return " ".join(self.sentences)

    def wrong_ending(self, rng: random.Random) -> tuple[str, str]:
        """Same ending template, one entity replaced by one the story contradicts.

        Returns (ending, kind) with kind in WRONG_KINDS: an object / colour / place /
        hero name never mentioned in the story, or a negative emotion where the story
        resolves happily.
        """
        fields = set(_FIELD_RE.findall(self.ending_template))
        kinds = [k for k in WRONG_KINDS if k in fields]
        kind = rng.choice(kinds)
        mentioned = {norm(w) for w in self.text.split()}
        pool = {"obj": OBJECTS, "col": COLOURS, "place": PLACES, "pos": EMO_NEG,
                "N": NAMES_F + NAMES_M}[kind]
        choices = [w for w in pool if norm(w) not in mentioned]
        ctx = dict(self.ctx)
        ctx[kind] = rng.choice(choices)
        ctx["a_" + kind] = article(ctx[kind])
        return _fill(self.ending_template, ctx), kind


def make_story(rng: random.Random) -> Story:
    """Draw one story: 5-9 sentences, ~40-85 words, entities persisting to the ending."""
    ch = rng.choice
    female = rng.random() < 0.5
    name = ch(NAMES_F if female else NAMES_M)
    friend_female = rng.random() < 0.5
    friend = name
    while friend == name:
        friend = ch(NAMES_F if friend_female else NAMES_M)
    act = ch(ACTIVITIES)
    act2 = act
    while act2 == act:
        act2 = ch(ACTIVITIES)
    kind = ch(KINDS)
    fkind = ch(KINDS)
    ctx = {
        "N": name, "P": "She" if female else "He", "p": "she" if female else "he",
        "poss": "her" if female else "his", "kind": kind, "trait": ch(TRAITS),
        "place": ch(PLACES), "act": act, "act2": act2, "F": friend, "fkind": fkind,
        "ftrait": ch(TRAITS), "when": ch(WHENS), "spot": ch(SPOTS), "quality": ch(QUALITIES),
        "col": ch(COLOURS), "obj": ch(OBJECTS), "pos": ch(EMO_POS), "neg": ch(EMO_NEG),
        "pos1": ch(EMO_POS),
    }
    for k in ("trait", "ftrait", "fkind", "quality", "col", "obj", "pos", "neg", "place"):
        ctx["a_" + k] = article(ctx[k])

    has_trait = rng.random() < 0.4
    has_friend = rng.random() < 0.45
    has_react = rng.random() < 0.4
    has_help = rng.random() < 0.4
    plan: list[tuple[str, tuple[str, ...]]] = [("intro", T_INTRO), ("setting", T_SETTING)]
    if has_trait:
        plan.append(("trait", T_TRAIT))
    if has_friend:
        plan.append(("friend", T_FRIEND))
    plan.append(("find", T_FIND))
    if has_react:
        plan.append(("react", T_REACT + T_REACT_F if has_friend else T_REACT))
    plan.append(("problem", T_PROBLEM))
    if has_help:
        plan.append(("help", T_HELP + T_HELP_F if has_friend else T_HELP))
    plan.append(("end", T_END + T_END_F if has_friend else T_END))

    sentences, slots = [], []
    end_t = ""
    for slot, group in plan:
        t = ch(group)
        sentences.append(_fill(t, ctx))
        slots.append(slot)
        end_t = t
    return Story(sentences=sentences, ctx=ctx, ending_template=end_t, slots=slots)


def sblimp_violation(sentence: str, rng: random.Random) -> tuple[str, str]:
    """An ungrammatical variant of ``sentence``: (variant, kind).

    kind 'article': a/an flipped (breaks determiner agreement); 'agreement': was -> were
    after a singular subject; 'swap': two adjacent different words exchanged (punctuation
    stays in place). The result is a permutation of the words or differs in one word.
    """
    words = sentence.split()
    kinds = ["swap", "swap"]
    art_idx = [i for i, w in enumerate(words) if w in ("a", "an")]
    was_idx = [i for i, w in enumerate(words) if norm(w) == "was"]
    if art_idx:
        kinds.append("article")
    if was_idx:
        kinds.append("agreement")
    kind = rng.choice(kinds)
    out = list(words)
    if kind == "article":
        i = rng.choice(art_idx)
        out[i] = "an" if words[i] == "a" else "a"
    elif kind == "agreement":
        i = rng.choice(was_idx)
        out[i] = words[i].replace("was", "were").replace("Was", "Were")
    else:
        cands = [i for i in range(len(words) - 1) if norm(words[i]) != norm(words[i + 1])]
        i = rng.choice(cands)
        a, b = words[i], words[i + 1]
        core_a, core_b = a.rstrip(string.punctuation), b.rstrip(string.punctuation)
        tail_a, tail_b = a[len(core_a):], b[len(core_b):]
        # keep capitalisation at the sentence start and punctuation at its position
        na, nb = core_b, core_a
        if i == 0:
            na = na[:1].upper() + na[1:]
            if core_a not in NAMES_F + NAMES_M:
                nb = nb[:1].lower() + nb[1:]
        out[i], out[i + 1] = na + tail_a, nb + tail_b
    return " ".join(out), kind
