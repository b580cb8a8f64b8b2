"""`data=reviews`: short English product, film, book, restaurant and hotel reviews with a sentiment label
(negative, neutral, positive), generated offline by netkiln. No package here ships real labelled text, so the
built-in text dataset is synthetic; nothing is downloaded.

How a review is made (`generate_reviews`, deterministic for a seed; cached under $NETKILN_CACHE_DIR like MNIST-1D):

- A domain (electronics, home, films, books, games, restaurants, hotels, clothing) gives the product nouns and the
  aspects reviewers talk about (battery, plot, service...); brand names, model codes, people's names, cities,
  prices and dates are drawn from generated lists. These words carry no sentiment, and give the vocabulary its
  thousands of rare words (plus a few typos).
- Between 1 and 12 sentences:
  opinions about an aspect ("the battery is really great"), factual filler ("I bought the Zentrova X20 in May"),
  and verdicts ("I would not recommend it").
- Each opinion has a value: the adjective's strength times an intensifier ("extremely") or a downtoner
  ("slightly"). Word order changes it: negation flips it ("the screen is not great", "I would not call the plot
  gripping", "is anything but cheap"; "not bad" is only mildly good) while "could not be more" intensifies; in a
  contrast ("X but Y", "although X, Y", "Y even though X") the main clause Y counts much more than X; an
  expectation ("I expected it to be great, but it was dull") counts only what it turned out to be.
- The label is drawn first (37% negative, 26% neutral, 37% positive) and sets the odds of each opinion's polarity;
  a draft whose summed value does not clearly agree with it (at least 1.4 for positive, at most -1.4 for
  negative, within +-0.6 for neutral) is rewritten. No text appears twice. Then 3% of the labels are replaced by a
  random class (annotator noise).

A bag-of-words TF-IDF + logistic regression baseline scores well but not perfectly on it (README, "Text"): it
cannot tell which side of a "but" a word sits on, or what a negation three words back applies to.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from netkiln.errors import NetkilnError
from netkiln.task import Task

from . import cache
from .config import check_keys
from .sources import RawSource, SourceSpec, register_source
from .text import TOKENIZER_KEYS, _refuse_standardize, text_source, tokenizer_settings

log = logging.getLogger(__name__)

GENERATOR_VERSION = 2              # bump when the generator's output changes: the cache key includes it
GENERATOR_ARGS = ("num_samples", "label_noise", "seed")
DEFAULTS = {"num_samples": 6000, "label_noise": 0.03, "seed": 0}
CLASSES = ("negative", "neutral", "positive")
THRESHOLD = 1.0

# ----------------------------------------------------------------------------------------------- word lists
POSITIVE = {  # adjective: strength
    "good": 1, "nice": 1, "solid": 1, "pleasant": 1, "great": 2, "excellent": 2, "amazing": 2, "fantastic": 2,
    "superb": 2, "wonderful": 2, "brilliant": 2, "outstanding": 2, "impressive": 1.5, "lovely": 1.5,
    "reliable": 1, "enjoyable": 1, "satisfying": 1, "polished": 1, "flawless": 2, "perfect": 2, "stunning": 2,
    "terrific": 2, "decent": 0.6, "sleek": 1, "elegant": 1, "clever": 1, "remarkable": 1.5, "splendid": 2,
    "charming": 1, "delightful": 1.5, "refreshing": 1, "top notch": 2, "first rate": 2,
}
NEGATIVE = {
    "bad": 1, "poor": 1, "weak": 1, "disappointing": 1.5, "awful": 2, "terrible": 2, "horrible": 2, "dreadful": 2,
    "useless": 2, "mediocre": 1, "annoying": 1, "frustrating": 1.5, "shoddy": 1.5, "pathetic": 2, "atrocious": 2,
    "subpar": 1, "lousy": 1.5, "awkward": 1, "unpleasant": 1, "overpriced": 1, "forgettable": 1, "lackluster": 1,
    "underwhelming": 1, "dismal": 2, "abysmal": 2, "clumsy": 1, "inferior": 1, "second rate": 1.5,
}
NEUTRAL = ["okay", "fine", "average", "acceptable", "standard", "ordinary", "adequate", "passable", "typical",
           "so so", "unremarkable", "alright", "fair"]
INTENSIFIERS = {"very": 1.4, "really": 1.4, "extremely": 1.8, "incredibly": 1.8, "truly": 1.5, "remarkably": 1.5,
                "quite": 1.2, "so": 1.4, "super": 1.5, "absolutely": 1.8, "genuinely": 1.4, "seriously": 1.5}
DOWNTONERS = {"somewhat": 0.5, "slightly": 0.4, "a bit": 0.5, "fairly": 0.6, "kind of": 0.5, "rather": 0.6,
              "mildly": 0.4, "a little": 0.4}

DOMAINS: dict[str, dict[str, Any]] = {
    "electronics": {
        "products": ["phone", "laptop", "tablet", "camera", "headphones", "speaker", "charger", "keyboard",
                     "monitor", "smartwatch", "router", "printer", "mouse", "earbuds", "television", "projector",
                     "microphone", "webcam", "drone", "ereader"],
        "aspects": ["battery", "screen", "sound", "build quality", "software", "price", "design", "charging",
                    "display", "bass", "microphone", "buttons", "case", "battery life", "touchpad", "speakers",
                    "camera", "app", "firmware", "connection", "range", "resolution", "setup", "cable"],
        "pos": {"fast": 1, "responsive": 1, "crisp": 1, "sharp": 1, "bright": 1, "snappy": 1, "sturdy": 1},
        "neg": {"slow": 1, "laggy": 1.5, "buggy": 1.5, "flimsy": 1.5, "noisy": 1, "blurry": 1, "faulty": 2,
                "sluggish": 1, "unreliable": 1.5, "defective": 2, "glitchy": 1.5},
        "verbs": ["bought", "ordered", "got", "picked up", "upgraded to"],
    },
    "home": {
        "products": ["blender", "toaster", "kettle", "vacuum", "coffee maker", "air fryer", "lamp", "chair", "desk",
                     "mattress", "frying pan", "knife set", "dishwasher", "fan", "heater", "rug", "sofa", "shelf",
                     "pillow", "juicer"],
        "aspects": ["motor", "handle", "lid", "cord", "design", "price", "cleaning", "noise level", "size",
                    "material", "finish", "instructions", "assembly", "cushion", "frame", "power", "filter",
                    "timer", "fabric", "legs"],
        "pos": {"sturdy": 1, "quiet": 1, "comfortable": 1.5, "easy": 1, "powerful": 1, "cozy": 1, "handy": 1},
        "neg": {"flimsy": 1.5, "noisy": 1, "uncomfortable": 1.5, "wobbly": 1, "leaky": 1.5, "fragile": 1,
                "cheap": 1, "clunky": 1, "rickety": 1.5, "loud": 1},
        "verbs": ["bought", "ordered", "got", "received", "picked up"],
    },
    "films": {
        "products": ["movie", "film", "documentary", "thriller", "comedy", "sequel", "series", "drama", "cartoon",
                     "remake", "musical", "western"],
        "aspects": ["plot", "acting", "soundtrack", "dialogue", "ending", "pacing", "cinematography", "script",
                    "cast", "villain", "special effects", "characters", "humor", "score", "opening scene",
                    "lead actor", "story", "twist", "costumes", "editing"],
        "pos": {"gripping": 1.5, "moving": 1.5, "hilarious": 1.5, "thrilling": 1.5, "touching": 1, "witty": 1,
                "memorable": 1, "captivating": 1.5},
        "neg": {"boring": 1.5, "dull": 1, "predictable": 1, "tedious": 1.5, "cheesy": 1, "confusing": 1,
                "pointless": 1.5, "bland": 1, "clumsy": 1, "painful": 2},
        "verbs": ["watched", "saw", "streamed", "rented", "caught"],
    },
    "books": {
        "products": ["novel", "book", "memoir", "cookbook", "biography", "mystery", "short story collection",
                     "poetry collection", "history book", "fantasy novel", "audiobook", "graphic novel"],
        "aspects": ["writing", "characters", "story", "ending", "prose", "pacing", "dialogue", "chapters",
                    "translation", "cover", "plot twist", "narrator", "world building", "recipes", "research",
                    "first chapter", "style", "illustrations"],
        "pos": {"gripping": 1.5, "moving": 1.5, "engaging": 1, "insightful": 1.5, "witty": 1, "beautiful": 1.5,
                "thoughtful": 1},
        "neg": {"boring": 1.5, "dull": 1, "predictable": 1, "tedious": 1.5, "shallow": 1, "confusing": 1,
                "repetitive": 1, "bland": 1, "clumsy": 1},
        "verbs": ["read", "finished", "borrowed", "bought", "listened to"],
    },
    "games": {
        "products": ["game", "board game", "puzzle", "console", "controller", "card game", "shooter",
                     "strategy game", "racing game", "platformer"],
        "aspects": ["graphics", "controls", "story", "multiplayer", "levels", "music", "difficulty",
                    "loading times", "menus", "boss fights", "tutorial", "rules", "pieces", "campaign", "servers"],
        "pos": {"addictive": 1, "fun": 1.5, "smooth": 1, "challenging": 0.8, "immersive": 1.5, "fast": 1},
        "neg": {"buggy": 1.5, "laggy": 1.5, "boring": 1.5, "repetitive": 1, "unfair": 1, "confusing": 1,
                "tedious": 1.5, "broken": 2},
        "verbs": ["played", "bought", "tried", "got", "downloaded"],
    },
    "restaurants": {
        "products": ["restaurant", "cafe", "bistro", "diner", "pizzeria", "bakery", "food truck", "steakhouse",
                     "noodle bar", "tea house", "pub", "sushi place"],
        "aspects": ["food", "service", "staff", "pasta", "dessert", "coffee", "portions", "menu", "atmosphere",
                    "prices", "waiter", "soup", "bread", "wine list", "burger", "salad", "music", "terrace"],
        "pos": {"tasty": 1.5, "delicious": 2, "fresh": 1, "friendly": 1, "cozy": 1, "attentive": 1, "generous": 1},
        "neg": {"bland": 1, "stale": 1.5, "greasy": 1, "rude": 1.5, "cold": 1, "soggy": 1.5, "slow": 1,
                "dirty": 1.5, "salty": 1},
        "verbs": ["visited", "tried", "went to", "ate at", "stopped by"],
    },
    "hotels": {
        "products": ["hotel", "hostel", "resort", "apartment", "inn", "guesthouse", "motel", "lodge",
                     "bed and breakfast", "cabin"],
        "aspects": ["room", "bed", "breakfast", "location", "pool", "staff", "shower", "view", "check in", "wifi",
                    "bathroom", "reception", "parking", "balcony", "spa", "lobby"],
        "pos": {"clean": 1, "spotless": 1.5, "comfortable": 1.5, "quiet": 1, "friendly": 1, "spacious": 1,
                "cozy": 1, "helpful": 1},
        "neg": {"dirty": 1.5, "noisy": 1, "cramped": 1, "rude": 1.5, "shabby": 1, "smelly": 1.5, "cold": 1,
                "uncomfortable": 1.5, "run down": 1.5},
        "verbs": ["stayed at", "booked", "tried", "stayed in", "chose"],
    },
    "clothing": {
        "products": ["jacket", "shoes", "boots", "dress", "backpack", "jeans", "sweater", "raincoat", "scarf",
                     "sneakers", "gloves", "hat", "shirt", "suitcase", "umbrella"],
        "aspects": ["fit", "fabric", "stitching", "zipper", "color", "sizing", "sole", "pockets", "material",
                    "buttons", "lining", "straps", "wheels", "seams", "price"],
        "pos": {"comfortable": 1.5, "warm": 1, "soft": 1, "durable": 1, "stylish": 1, "waterproof": 1},
        "neg": {"itchy": 1, "flimsy": 1.5, "uncomfortable": 1.5, "cheap": 1, "tight": 1, "scratchy": 1,
                "faded": 1},
        "verbs": ["bought", "ordered", "got", "received", "picked up"],
    },
}

FIRST_NAMES = """anna ben carla david emma felix grace hugo iris jack karen leo mia noah olivia paul quinn rosa sam
tara uma victor wendy xavier yara zoe adam bella chris diana ethan fiona george hannah ivan julia kevin lucy
marco nina oscar petra rafael sofia tom ursula vera william ximena yusuf zara alice bruno chloe daniel elena
frank gina henry isabel james kim liam maya nathan omar priya ravi sara theo ulrich valerie wei yuki andre
beatrice carlos dmitri esther farah gustav helga ingrid jonas kofi lars mateo nadia otto pablo rania stefan
tobias ulla vikram wanda aiko bashir cyrus dalia emil freya goran hiro imani jorge""".split()
CITIES = """boston denver austin portland chicago seattle madrid lisbon berlin vienna prague oslo dublin leeds
lyon milan naples zurich geneva krakow riga tallinn porto seville bilbao munich hamburg cologne utrecht ghent
bruges turin verona bologna florence malmo bergen tampere aarhus galway cork bristol glasgow york bath oxford
cambridge brighton cardiff quebec toronto ottawa calgary halifax sydney perth hobart auckland nelson kyoto
osaka nagoya sapporo busan taipei hanoi manila jakarta lima quito bogota santiago cusco montevideo""".split()
STORES = ["mall", "market", "outlet", "shop", "store", "website", "airport", "station", "supermarket", "boutique"]
RELATIONS = ["brother", "sister", "mother", "father", "son", "daughter", "wife", "husband", "partner", "friend",
             "neighbor", "colleague", "boss", "grandmother", "uncle", "aunt", "cousin", "roommate", "kids"]
MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december"]
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
COLORS = ["black", "white", "grey", "navy", "red", "green", "olive", "beige", "silver", "blue", "pink", "teal"]
OCCASIONS = ["a birthday", "an anniversary", "a business trip", "the holidays", "a weekend away", "a wedding",
             "graduation", "a school project", "a long flight", "my commute", "a camping trip", "work"]
NUMBER_WORDS = ["two", "three", "four", "five", "six", "seven", "eight", "ten", "twelve", "fifteen"]
SYLLABLES = """zen tri ko va lux mar ora pix no tek sol ri qua bel dor fin gra ly mo ta ve xo ar cor dal eon
fy gen hal io jun kel lin mir nor ox pra quo ren sy tor ul vin wex yor zim bra cle dru fla glo hy kra plo
ste tru vox""".split()


# ----------------------------------------------------------------------------------------------- generator
NEGATED_VERB = {"is": ["is not", "isn't"], "was": ["was not", "wasn't"], "are": ["are not", "aren't"],
                "were": ["were not", "weren't"], "feels": ["does not feel", "doesn't feel"],
                "seems": ["does not seem", "doesn't seem"], "feel": ["do not feel", "don't feel"],
                "seem": ["do not seem", "don't seem"]}
BE = ("is", "was", "are", "were")
TONES = {2: 0.75, 0: 0.25, 1: 0.5}        # label -> the chance that an opinion is positive
LABEL_SHARES = (0.37, 0.26, 0.37)         # negative, neutral, positive
MARGIN = 0.4                              # a review's value is at least this far from the class boundaries


class _Writer:
    """One review at a time: sentences and the value each contributes to the label."""

    def __init__(self, rng, brands: list[str]):
        self.rng = rng                 # random.Random: fast, and the same stream on every platform
        self.brands = brands
        self.domains = [DOMAINS[k] for k in sorted(DOMAINS)]
        self.adjectives = {}           # (domain name, polarity) -> sorted [(word, strength)]
        for name in sorted(DOMAINS):
            dom = DOMAINS[name]
            for pol, base, extra in ((1, POSITIVE, dom["pos"]), (-1, NEGATIVE, dom["neg"])):
                self.adjectives[(id(dom), pol)] = sorted({**base, **extra}.items())
        self.intensifiers = sorted(INTENSIFIERS.items())
        self.downtoners = sorted(DOWNTONERS.items())

    def pick(self, seq):
        return seq[int(self.rng.random() * len(seq))]

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    # -------------------------------------------------------------------- pieces
    def adjective(self, dom: dict, polarity: int) -> tuple[str, float]:
        word, strength = self.pick(self.adjectives[(id(dom), polarity)])
        return word, float(strength)

    def degree(self) -> tuple[str, float]:
        r = self.rng.random()
        if r < 0.3:
            w, m = self.pick(self.intensifiers)
            return w + " ", m
        if r < 0.4:
            w, m = self.pick(self.downtoners)
            return w + " ", m
        return "", 1.0

    def subject(self, dom: dict, product: str) -> tuple[str, str]:
        """'the battery' / 'these boots' / 'it', and a verb that agrees with it."""
        r = self.rng.random()
        if r < 0.85:
            noun = self.pick(dom["aspects"]) if r < 0.6 else product
        else:
            return "it", self.pick(["is", "was", "feels", "seems"])
        plural = noun.endswith("s") and not noun.endswith(("ss", "us"))
        verb = self.pick(["are", "were", "are", "feel", "seem"] if plural else ["is", "was", "is", "feels", "seems"])
        det = self.pick(["the", "the", "the", "my", "our", "these" if plural else "this"])
        return f"{det} {noun}", verb

    def opinion(self, dom: dict, product: str, polarity: int) -> tuple[str, float]:
        """A clause about one aspect and its value (negation and intensifiers applied)."""
        subj, verb = self.subject(dom, product)
        form = self.rng.random()
        if form < 0.08:                                   # neutral words: no sentiment
            return f"{subj} {verb} {self.pick(NEUTRAL)}", 0.0
        adj, strength = self.adjective(dom, polarity)
        if form < 0.66:
            deg, mult = self.degree()
            return f"{subj} {verb} {deg}{adj}", polarity * strength * mult
        # negation: the value flips ("not bad" is only mildly good)
        flipped = -0.8 * polarity * strength if polarity > 0 else 0.4 * strength
        deg = self.pick(["", "", "", "very ", "really ", "that ", "all that ", "particularly "])
        if form < 0.80:
            if verb in BE and self.chance(0.4):
                neg = self.pick(["never", "hardly", "not exactly", "no longer", "far from", "not at all"])
                return f"{subj} {verb} {neg} {adj}", flipped
            return f"{subj} {self.pick(NEGATED_VERB[verb])} {deg}{adj}", flipped
        if form < 0.90:                                   # negation several words before the adjective
            lead = self.pick(["i would not call", "i wouldn't call", "i would never call", "nobody would call",
                              "i did not find", "i never found", "you could not call", "i can't say i found"])
            return f"{lead} {subj} {deg}{adj}", flipped
        if form < 0.95:                                   # "anything but": a strong flip
            return f"{subj} {verb} anything but {adj}", -polarity * strength
        # "could not be more": a negation that intensifies
        return f"{subj} could not {self.pick(['be', 'have been'])} more {adj}", 1.6 * polarity * strength

    def verdict(self, polarity: int) -> tuple[str, float]:
        if polarity > 0:
            s = self.pick(["i love it", "i would recommend it", "i would buy it again", "worth every penny",
                           "i cannot recommend it enough", "you will not regret it", "no complaints at all",
                           "highly recommended", "i would not change a thing", "i am very happy with it",
                           "definitely a keeper", "it exceeded my expectations", "i will be back",
                           "i could not be happier", "five stars from me", "i don't regret it"])
        else:
            s = self.pick(["i would not recommend it", "i returned it", "a waste of money", "never again",
                           "i cannot recommend it", "do not waste your money", "i regret buying it",
                           "avoid it", "i will not be back", "it did not meet my expectations",
                           "i want my money back", "not worth the price", "i would not buy it again",
                           "stay away", "one star from me", "i don't love it"])
        return s, 1.5 * polarity

    def expectation(self, dom: dict, product: str, polarity: int) -> tuple[str, float]:
        """'I expected X, but it was Y': only what it turned out to be counts."""
        first, _ = self.adjective(dom, -polarity)
        then, strength = self.adjective(dom, polarity)
        if self.chance(0.6):
            return f"i expected the {product} to be {first}, but it was {then}", 1.2 * polarity * strength
        return f"i expected {_article(then)} {then} {product} and that is what i got", polarity * strength

    def contrast(self, dom: dict, product: str, minor: int, main: int) -> tuple[str, float]:
        a, va = self.opinion(dom, product, minor)
        b, vb = self.opinion(dom, product, main)
        value = 0.3 * va + 1.3 * vb
        form = self.rng.random()
        if form < 0.5:
            return f"{a}, but {b}", value
        if form < 0.7:
            return f"although {a}, {b}", value
        if form < 0.85:
            return f"{b}, even though {a}", value
        return f"{a}. however, {b}", value

    def filler(self, dom: dict, product: str, brand: str) -> str:
        who = self.pick(FIRST_NAMES).capitalize()
        r = self.rng.random
        return self.pick([
            f"i {self.pick(dom['verbs'])} the {brand} {product} {self.pick(['last', 'in', 'early in', 'late in'])} "
            f"{self.pick(MONTHS)}",
            f"{who} recommended the {brand} {product} to me",
            f"it arrived on {self.pick(DAYS)}",
            f"i have been using it for {self.pick(NUMBER_WORDS)} {self.pick(['days', 'weeks', 'months'])}",
            f"we went for {self.pick(OCCASIONS)} with {who}",
            f"i paid {5 + int(r() * 895)} dollars at the {self.pick(STORES)} in {self.pick(CITIES).capitalize()}",
            f"i got it for my {self.pick(RELATIONS)}",
            f"the {product} comes in {self.pick(COLORS)} and {self.pick(COLORS)}",
            f"this is my {self.pick(['first', 'second', 'third', 'fourth'])} {product} from {brand}",
            f"i needed it for {self.pick(OCCASIONS)}",
            f"my {self.pick(RELATIONS)} in {self.pick(CITIES).capitalize()} has the same one",
            f"it is the {brand} {self.pick(['x', 'z', 'm', 'pro ', 'max ', 'series '])}{1 + int(r() * 98)}",
        ])

    # -------------------------------------------------------------------- one review
    def review(self, label: int) -> str:
        """A review whose value clearly agrees with `label` (drafts near a class boundary are rewritten)."""
        while True:
            text, score = self.draft(label)
            if (score >= THRESHOLD + MARGIN if label == 2 else score <= -THRESHOLD - MARGIN if label == 0
                    else abs(score) <= THRESHOLD - MARGIN):
                return text

    def draft(self, label: int) -> tuple[str, float]:
        dom = self.pick(self.domains)
        product = self.pick(dom["products"])
        brand = self.pick(self.brands)
        p_pos = TONES[label]
        n = self.pick([1, 2, 2, 3, 3, 3, 4, 4, 5, 5, 6, 6, 7, 8, 9, 10, 12])
        sentences, score = [], 0.0
        for _ in range(n):
            pol = 1 if self.chance(p_pos) else -1
            kind = self.rng.random()
            if label == 1 and kind < 0.3:
                s, v = self.lukewarm(dom, product), 0.0
            elif kind < 0.42:
                s, v = self.opinion(dom, product, pol)
            elif kind < 0.54:
                s, v = self.contrast(dom, product, -pol, pol)
            elif kind < 0.66:
                s, v = self.verdict(pol)
            elif kind < 0.72:
                s, v = self.expectation(dom, product, pol)
            else:
                s, v = self.filler(dom, product, brand), 0.0
            sentences.append(s)
            score += v
        text = " ".join(_sentence(s, self.pick([".", ".", ".", "!", "..."])) for s in sentences)
        if len(text.split()) < 5:                          # a one-liner gets a short opener
            text = _sentence(self.pick(["quick review of the", "short version about the", "my two cents on the",
                                        "a few words about the"]) + f" {brand} {product}", ":") + " " + text
        return self.typos(text), score

    def lukewarm(self, dom: dict, product: str) -> str:
        subj, verb = self.subject(dom, product)
        return self.pick([f"{subj} {verb} {self.pick(NEUTRAL)}", "it does the job", "nothing special",
                          "i have mixed feelings", "three stars", "it is okay for the price", "not bad, not great",
                          f"an average {product}", "it works as described", "it is what it is",
                          "neither good nor bad", f"a pretty standard {product}", "middle of the road"])

    def typos(self, text: str) -> str:
        """A few misspelled words (a swapped or dropped letter), as real reviews have."""
        words = text.split(" ")
        for i, w in enumerate(words):
            if len(w) >= 5 and w.isalpha() and self.chance(0.012):
                j = 1 + int(self.rng.random() * (len(w) - 2))
                words[i] = w[:j] + w[j + 1:] if self.chance(0.5) else w[:j - 1] + w[j] + w[j - 1] + w[j + 1:]
        return " ".join(words)


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _sentence(s: str, end: str) -> str:
    s = s.strip().replace(" i ", " I ").replace(" i'", " I'")
    if s.startswith(("i ", "i'")):
        s = "I" + s[1:]
    return s[:1].upper() + s[1:] + end


def _brands(rng, count: int = 1500) -> list[str]:
    names: set[str] = set()
    while len(names) < count:
        k = 2 + int(rng.random() * 2)
        names.add("".join(SYLLABLES[int(rng.random() * len(SYLLABLES))] for _ in range(k)).capitalize())
    return sorted(names)


def generate_reviews(num_samples: int = 6000, label_noise: float = 0.03, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """(texts, labels 0 negative / 1 neutral / 2 positive), the same for the same arguments on every machine."""
    import random

    rng = random.Random(seed)
    writer = _Writer(rng, _brands(rng))
    texts, labels, seen = [], [], set()
    while len(texts) < num_samples:
        r = rng.random()
        label = 0 if r < LABEL_SHARES[0] else 1 if r < LABEL_SHARES[0] + LABEL_SHARES[1] else 2
        text = writer.review(label)
        if text not in seen:            # no text twice: no split shares a text with another
            seen.add(text)
            texts.append(text)
            labels.append(label)
    for i in range(num_samples):
        if rng.random() < label_noise:
            labels[i] = int(rng.random() * len(CLASSES))
    return texts, np.asarray(labels, dtype=np.int64)


# ----------------------------------------------------------------------------------------------- source
def _generator_args(node: dict, path: str) -> dict:
    args = dict(DEFAULTS)
    over = node.get("generator") or {}
    if not isinstance(over, dict):
        raise NetkilnError(f"expected a mapping of generator arguments, got {over!r}", key=path)
    check_keys(over, GENERATOR_ARGS, path)
    args.update({k: v for k, v in over.items() if v is not None})
    n, noise, seed = args["num_samples"], args["label_noise"], args["seed"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 30:
        raise NetkilnError(f"must be an integer of at least 30, got {n!r}", key=f"{path}.num_samples")
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 <= noise < 1:
        raise NetkilnError(f"must be a number in [0, 1), got {noise!r}", key=f"{path}.label_noise")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise NetkilnError(f"expected an integer, got {seed!r}", key=f"{path}.seed")
    return {"num_samples": n, "label_noise": float(noise), "seed": seed}


def load_reviews(node: dict, path: str) -> RawSource:
    _refuse_standardize(node, path)
    settings = tokenizer_settings(node, path)
    args = _generator_args(node, f"{path}.generator")
    key = cache.cache_key({"dataset": "reviews", "version": GENERATOR_VERSION, "args": args})
    file = cache.cache_dir() / f"reviews-{key}.npz"
    arrays = cache.load_arrays(file)
    cached = arrays is not None and {"text", "y"} <= set(arrays)
    if cached:
        texts = bytes(arrays["text"]).decode("utf-8").split("\n")
        y = arrays["y"].astype(np.int64)
    else:
        texts, y = generate_reviews(**args)
        # One UTF-8 byte array (texts have no newlines): no pickled objects in the cache.
        blob = np.frombuffer("\n".join(texts).encode("utf-8"), dtype=np.uint8)
        if not cache.save_arrays(file, {"text": blob, "y": y}):
            log.warning("could not write the reviews cache at %s; it will be generated again next time", file)
    task = Task("multiclass", len(CLASSES), CLASSES)
    target_info = {"task": "multiclass", "class_names": list(CLASSES), "class_values": list(CLASSES)}
    info = {"source": "reviews (generated offline by netkiln)", "generator": args, "generator_version":
            GENERATOR_VERSION, "cache_file": str(file), "from_cache": bool(cached), "rows": len(texts),
            "description": "synthetic product/film/restaurant reviews, 3 sentiment classes (netkiln.data.reviews)"}
    return text_source(texts, y, task, target_info, settings, path, info=info)


register_source(SourceSpec("reviews", load_reviews, extra_keys=("generator",) + TOKENIZER_KEYS, standardize=False,
                           description="generated reviews, 3 sentiment classes, text (token ids)"))
