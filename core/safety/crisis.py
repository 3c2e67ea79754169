"""Crisis recognition: does a message express suicidal thoughts, self-harm, abuse or immediate danger?

Two layers: `assess` asks the rule table first and, when it finds nothing, the semantic layer
(core/safety/semantic.py), which reads meaning the table has no phrase for. `assess_rules` is the table alone.

This module is the rule layer's matcher; the rules themselves are data (data/crisis_rules.toml, read by
crisis_rules.py), readable and testable line by line. A message is normalised (case, Unicode, apostrophes,
texting abbreviations, common misspellings, leetspeak), split into sentences, and each sentence is matched against
a table of phrase patterns per category. Every pattern is a phrase, never a lone keyword, and carries a weight:
strong phrases (1.0) decide alone, weak ones (0.5) only together with another signal, either in the same message or
from a crisis message earlier in the conversation. A match is ignored when, in its own clause, it is negated
("I would never hurt myself"), hypothetical ("if I ever felt like..."), about fiction or a report, told as a past
that is over ("I used to self-harm but...") or when a pattern's own figurative/accident cue is in the sentence
("I cut myself shaving", "I killed myself laughing").

Decisions (documented in docs/safety.md): a present risk to someone else ("my friend says she wants to kill
herself") is a crisis, because the fixed reply speaks to "you or someone near you"; grief over a past death ("my
friend committed suicide last year") is not. Disclosures of sexual abuse, threats and coercion stay a crisis when
told in the past tense, because a generative model should not improvise a reply to them.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Sequence

from core.safety.crisis_rules import CATEGORIES, RULES, STRONG, SUICIDE, WEAK, Rule, phrase

__all__ = ["CATEGORIES", "CONTEXT_TURNS", "CRISIS_REPLY", "RULES", "STRONG", "WEAK", "CrisisAssessment", "Rule",
           "RuleTable", "assess", "assess_rules", "normalise", "phrase"]

THRESHOLD = 1.0
# A crisis message among the last few turns makes one weak signal in the new message enough.
CONTEXT_TURNS = 3
CONTEXT_WEIGHT = 0.5

CRISIS_REPLY = (
    "It sounds like you may be going through something really serious, and I'm glad you said it. I'm an AI "
    "program in a research demo, not a person and not a therapist, so I can't give you the help you deserve, "
    "but people can, right now. If you or someone near you is in immediate danger, please call your local "
    "emergency number (for example 911 in the US and Canada, 112 in the EU, 999 in the UK). In the US you can "
    "call or text 988 (Suicide & Crisis Lifeline) at any time; elsewhere, findahelpline.com lists free, "
    "confidential helplines in your country. If you can, tell someone you trust how you are feeling."
)


@dataclass(frozen=True)
class CrisisAssessment:
    is_crisis: bool
    category: str | None  # one of CATEGORIES when is_crisis
    score: float  # sum of the distinct matched rules' weights (plus context); crisis from THRESHOLD up
    rules: tuple[str, ...] = ()  # "category/rule" of every counted match
    reason: str = ""



# ---------------------------------------------------------------------------------------------------------------
# Normalisation. The rules are written against its output: lowercase ASCII words separated by single spaces,
# contractions spelled out ("i am", "do not", "can not", "will not"), "going to"/"want to" for "gonna"/"wanna".
# ---------------------------------------------------------------------------------------------------------------

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u00b4": "'", "\u02bc": "'"})
# Leetspeak only between letters, so "k1ll" and "su1c1de" read as words while "911" and "!" stay themselves.
_LEET = re.compile(r"(?<=[a-z])[1!30@$](?=[a-z])")
_LEET_MAP = {"1": "i", "!": "i", "3": "e", "0": "o", "@": "a", "$": "s"}
_CONTRACTIONS = [(re.compile(p), r) for p, r in [
    (r"\bwon't\b", "will not"), (r"\bcan't\b", "can not"), (r"\bain't\b", "am not"), (r"n't\b", " not"),
    (r"'m\b", " am"), (r"'re\b", " are"), (r"'ve\b", " have"), (r"'ll\b", " will"), (r"'d\b", " would"),
    (r"\b(he|she|it|that|there|what|who|someone|somebody|everyone|nobody|life|this|here)'s\b", r"\1 is"),
]]
# Texting forms, contractions typed without apostrophes, and the misspellings people make in exactly the words
# the patterns need. Word for word; a value may be several words.
_WORDS = {
    "dont": "do not", "doesnt": "does not", "didnt": "did not", "cant": "can not", "cannot": "can not",
    "wont": "will not", "wouldnt": "would not", "couldnt": "could not", "shouldnt": "should not",
    "isnt": "is not", "arent": "are not", "wasnt": "was not", "werent": "were not", "havent": "have not",
    "hasnt": "has not", "hadnt": "had not", "dnt": "do not", "im": "i am", "ive": "i have", "youre": "you are",
    "theyre": "they are", "hes": "he is", "shes": "she is", "thats": "that is", "theres": "there is",
    "whats": "what is", "ima": "i am going to", "imma": "i am going to", "wanna": "want to", "wana": "want to",
    "gonna": "going to", "gunna": "going to", "finna": "going to", "gotta": "got to", "tryna": "trying to",
    "kms": "kill myself", "kys": "kill yourself", "idk": "i do not know", "idc": "i do not care",
    "ngl": "not going to lie", "tbh": "to be honest", "rn": "right now", "tn": "tonight", "tonite": "tonight",
    "2nite": "tonight", "2day": "today", "tmrw": "tomorrow", "ppl": "people", "bf": "boyfriend",
    "gf": "girlfriend", "pls": "please", "plz": "please", "cuz": "because", "coz": "because", "bc": "because",
    "fr": "for real", "u": "you", "ur": "your", "abt": "about", "noone": "no one", "sum1": "someone",
    "some1": "someone", "no1": "no one", "every1": "everyone", "anymor": "anymore", "nemore": "anymore",
    "wnat": "want", "wnt": "want", "myslef": "myself", "mysefl": "myself", "mysef": "myself", "myslf": "myself",
    "myselfe": "myself", "meself": "myself", "mself": "myself", "kil": "kill", "kll": "kill", "kiling": "killing",
    "killin": "killing", "suicde": "suicide", "sucide": "suicide", "suiside": "suicide", "suicid": "suicide",
    "suside": "suicide", "suicie": "suicide", "sucid": "suicide", "sewerslide": "suicide", "suicidial": "suicidal",
    "sucidal": "suicidal", "suicdal": "suicidal", "suisidal": "suicidal", "suicidle": "suicidal",
    "sucidial": "suicidal", "diee": "die", "bout": "about", "selfharm": "self harm", "selfharming": "self harming",
    "selfharmed": "self harmed", "unalived": "unalive", "cutt": "cut", "cuting": "cutting", "bleeed": "bleed",
}
_WORD = re.compile(r"\b(?:" + "|".join(sorted(_WORDS, key=len, reverse=True)) + r")\b")
_PHRASE_FIXES = [(re.compile(p), r) for p, r in [
    (r"\bmy self\b(?! harm| injur)", "myself"), (r"\bun alive", "unalive"), (r"\bany more\b", "anymore"),
    (r"\b(want|going|need|have|got|about|ready|trying|try) 2\b", r"\1 to"),  # "i want 2 die"
]]
_SENTENCE_END = re.compile(r"[.!?;:\n]+")
# ...unless it is back: "i cut again after being clean for a month".
_RECURRING = re.compile(r"\b(?:again|relapsed|still|anymore)\b")
# Words that start a new clause: a negation or hypothetical before them does not reach past them.
_CLAUSE_WORDS = frozenset("but and because though although however yet or so then until while".split())
# Contrast words that separate a past that is over from the present ("I used to ... but now ...").
_CONTRAST_WORDS = frozenset("but now however though although yet until".split())


@dataclass
class _Sentence:
    tokens: list[str]
    breaks: set[int] = field(default_factory=set)  # token indices a comma came before

    def __post_init__(self):
        self.text = " ".join(self.tokens)
        self.starts = []  # char offset of each token in self.text
        offset = 0
        for token in self.tokens:
            self.starts.append(offset)
            offset += len(token) + 1

    def token_at(self, char: int) -> int:
        return max(0, len([s for s in self.starts if s <= char]) - 1)

    def clause_start(self, index: int) -> int:
        """Index of the first token of the clause holding token `index`."""
        for i in range(index, 0, -1):
            if i in self.breaks or self.tokens[i - 1] in _CLAUSE_WORDS:
                return i
        return 0

    def contrast_scope(self, start: int, end: int) -> str:
        """The text around tokens [start, end) up to the nearest contrast word on either side."""
        left = start
        while left > 0 and self.tokens[left - 1] not in _CONTRAST_WORDS:
            left -= 1
        right = end
        while right < len(self.tokens) and self.tokens[right] not in _CONTRAST_WORDS:
            right += 1
        return " ".join(self.tokens[left:right])


def normalise(text: str) -> str:
    """Lowercase ASCII words, contractions spelled out, texting forms and misspellings mapped to plain words."""
    text = unicodedata.normalize("NFKC", text).lower().translate(_APOSTROPHES)
    text = re.sub(r"(?<=[a-z]) ' (?=[a-z])", "'", text)  # DailyDialog writes "don ' t"
    text = _LEET.sub(lambda m: _LEET_MAP[m.group()], text)
    for pattern, replacement in _CONTRACTIONS:
        text = pattern.sub(replacement, text)
    text = text.replace("'", "")
    text = re.sub(r"([a-z])\1{2,}", r"\1\1", text)  # "soooo" -> "soo", "killll" -> "kill"
    text = re.sub(r"[^a-z0-9,.!?;:\n ]+", " ", text)  # hyphens, emoji and symbols separate words
    text = _WORD.sub(lambda m: _WORDS[m.group()], text)
    for pattern, replacement in _PHRASE_FIXES:
        text = pattern.sub(replacement, text)
    return text


def _sentences(normalised: str) -> list[_Sentence]:
    out = []
    for chunk in _SENTENCE_END.split(normalised):
        tokens, breaks = [], set()
        for piece in chunk.split(","):
            if tokens:
                breaks.add(len(tokens))
            tokens.extend(piece.split())
        if tokens:
            out.append(_Sentence(tokens, breaks))
    return out


# ---------------------------------------------------------------------------------------------------------------
# What cancels a match.
# ---------------------------------------------------------------------------------------------------------------

_NEGATION = re.compile(r"\b(?:not|never|nor|neither|no longer|no way|without)\b")
_NEGATION_WINDOW = 6  # tokens before the match
# Phrases with a negation word that do not negate what follows ("i can not stop thinking about killing myself").
_NOT_NEGATING = re.compile(
    r"\b(?:do not know(?: if| whether| why| how| what)?|not sure(?: if| whether| why)?|do not care|"
    r"can not (?:stop|help|take|handle|do|bear|stand|sleep|cope|breathe|go on|keep|deal|anymore)|"
    r"not going to lie|why (?:should|would|do) i not|why not|do not think i can|not okay|not ok|not fine|"
    r"not alright|not doing (?:well|good|okay)|(?:do not|can not) (?:have|see|find|think of)|never been so|"
    r"never felt (?:so|this|more))\b")
_HYPOTHETICAL = re.compile(
    r"\b(?:if (?:i |you |someone |somebody |anyone |people )?(?:ever|were to|was to|had to|felt|feel)|what if|"
    r"imagine|imagining|suppose|supposing|pretend|pretending|hypothetically|as if|even if|in case)\b")
# Fiction and reports: the words are someone else's, not the writer's state.
_FICTION = re.compile(
    r"\b(?:movie|movies|film|films|tv|tv show|the show|a show|this show|that show|series|episode|book|books|"
    r"novel|song|lyrics|character|characters|video game|documentary|article|the news|podcast|poem|anime|manga|"
    r"netflix|a story|the story|squad|prevention|awareness|statistics|research|essay|history class|dream|dreams|"
    r"dreamt|dreamed|nightmare|nightmares|thesis|dissertation|first aid|assembly|lit review|seminar|debated|"
    r"why do people|how do people|why do some people|why would someone|what makes people|report|reports|reported|"
    r"reporting|warning signs|risk factors|lecture)\b")
# A past that is over. Checked only up to the nearest contrast word, so "i used to be happy but now i want to
# die" still counts. Recent past ("last night", "yesterday") is not here on purpose.
_PAST = re.compile(
    r"\b(?:used to|use to|years ago|year ago|months ago|last year|last (?:spring|summer|autumn|fall|winter)|"
    r"in (?:19|20)\d\d|when i had \d+ years|when i am (?:small|little|young|a kid|a child)|"
    r"a while ago|long ago|long time ago|in the past|"
    r"when (?:i was|we were) (?:a |in |kids|children|young|little|younger|small|\d+|[a-z]+teen)|as (?:a )?"
    r"(?:kid|kids|child|children|teen|teenager|teenagers)|"
    r"back (?:then|in (?:high school|college|school|the day))|growing up|clean for|been clean|been sober|"
    r"(?:days?|weeks?|months?|years?) (?:clean|free)|(?:clean|free) (?:of|from) (?:self harm|harm|cutting)|"
    r"(?:self harm|harm|cutting) free|since i (?:stopped|quit) (?:cutting|self harm|hurting myself|harming myself)|"
    r"old (?:self harm )?scars|in (?:dbt|therapy|treatment) for|in recovery|recovered|since then|the time (?:i|when)|"
    r"in my (?:teens|twenties|thirties|forties|youth))\b")


def _cancelled(rule: Rule, sentence: _Sentence, match: re.Match) -> str | None:
    """Why this match does not count, or None when it does."""
    start = sentence.token_at(match.start())
    end = sentence.token_at(max(match.start(), match.end() - 1)) + 1
    clause = sentence.clause_start(start)
    prefix = " ".join(sentence.tokens[clause:start])
    # The match's first word can complete a phrase that does not negate: "i can not [stop cutting]".
    head = " ".join(sentence.tokens[clause:start + 1])
    window = _NOT_NEGATING.sub("_", head).split()[:-1][-_NEGATION_WINDOW:]
    if "i" in window:  # a new "i ..." starts a new statement: "i can not sleep i want to die"
        window = window[len(window) - window[::-1].index("i"):]
    if _NEGATION.search(" ".join(window)):
        return "negated"
    if _HYPOTHETICAL.search(prefix):
        return "hypothetical"
    if _FICTION.search(sentence.text):
        return "fiction or report"
    scope = sentence.contrast_scope(start, end)
    if not rule.past_ok and _PAST.search(scope) and not _RECURRING.search(scope):
        return "past"
    if rule.unless is not None and rule.unless.search(sentence.text):
        return "figurative or accidental"
    return None


# ---------------------------------------------------------------------------------------------------------------
# Matching a table of rules: the crisis table (crisis_rules.py) here, the reply rules of guard.py there.
# ---------------------------------------------------------------------------------------------------------------

class RuleTable:
    """A table of rules matched sentence by sentence, with negation, hypotheticals, fiction and past set aside.
    Every rule is tried on every sentence (about 0.2 ms for a message of two sentences here): no index of required
    words to skip rules with, so a new rule can never be skipped wrongly."""

    def __init__(self, rules: Sequence[Rule]):
        self.rules = tuple(rules)
        self._keyed = [(f"{rule.category}/{rule.name}", rule) for rule in self.rules]

    def matches(self, normalised: str) -> tuple[dict[str, tuple[Rule, str]], list[str]]:
        """Counted matches {"category/name": (rule, excerpt)} and why the others were set aside."""
        counted, ignored = {}, []
        for sentence in _sentences(normalised):
            for key, rule in self._keyed:
                for match in rule.pattern.finditer(sentence.text):
                    why = _cancelled(rule, sentence, match)
                    if why is None:
                        counted.setdefault(key, (rule, match.group()))
                        break
                    ignored.append(f"'{match.group()}' ({why})")
        return counted, ignored


_TABLE = RuleTable(RULES)

# After a crisis message, a short reply that affirms or continues it ("yes", "tonight", "i mean it").
_CONTINUATION = re.compile(
    r"^(?:yes|yeah|yep|yea|i do|i mean it|i am serious|for real|i am not joking|not joking|tonight|today|right now|"
    r"soon|i have a plan|i already (?:did|took|started)|i have (?:them|it) (?:here|ready))\b")


def _is_crisis_turn(utterance: object) -> bool:
    if not isinstance(utterance, str):
        return False
    if CRISIS_REPLY in utterance:
        return True
    counted, _ = _TABLE.matches(normalise(utterance))
    return sum(rule.weight for rule, _ in counted.values()) >= THRESHOLD


def assess(text: str, history: Sequence[str] = ()) -> CrisisAssessment:
    """Whether `text` (the user's newest message) is a crisis; `history` is the conversation before it. Both layers:
    the rule table decides first, and what it passes the semantic layer (core.safety.semantic) reads for meaning."""
    found = assess_rules(text, history)
    if found.is_crisis:
        return found
    from core.safety.semantic import second_opinion  # torch and MiniLM load with the first message the rules pass

    return second_opinion(text, history, found)


def assess_rules(text: str, history: Sequence[str] = ()) -> CrisisAssessment:
    """The rule table's assessment of `text` alone (with `history` for weak signals and short continuations)."""
    normalised = normalise("" if text is None else str(text))
    counted, ignored = _TABLE.matches(normalised)
    score = sum(rule.weight for rule, _ in counted.values())
    rules = list(counted)
    context = 0 < score < THRESHOLD or bool(_CONTINUATION.search(normalised.strip()))
    recent = list(history)[-CONTEXT_TURNS:] if isinstance(history, (list, tuple)) else []
    if context and any(_is_crisis_turn(turn) for turn in recent):
        score += CONTEXT_WEIGHT + (0 if counted else CONTEXT_WEIGHT)  # a bare continuation leans on the context
        rules.append("context/earlier_crisis")
    if score < THRESHOLD:
        reason = "no crisis phrase" if not counted else f"weak signals only: {', '.join(rules)}"
        if ignored:
            reason += f"; ignored {'; '.join(ignored[:3])}"
        return CrisisAssessment(False, None, score, tuple(rules), reason)
    strongest = max(counted.values(), key=lambda item: item[0].weight, default=None)
    category = strongest[0].category if strongest else _history_category(history)
    excerpts = ", ".join(f"'{excerpt}'" for _, excerpt in counted.values())
    reason = f"{category}: matched {', '.join(rules)}" + (f" ({excerpts})" if excerpts else "")
    return CrisisAssessment(True, category, score, tuple(rules), reason)


def _history_category(history: Sequence[str]) -> str:
    for turn in reversed(list(history)[-CONTEXT_TURNS:]):
        if isinstance(turn, str) and CRISIS_REPLY not in turn:
            found = assess_rules(turn)
            if found.is_crisis:
                return found.category
    return SUICIDE
