"""Crisis recognition: does a message express suicidal thoughts, self-harm, abuse or immediate danger?

Two layers: `assess` asks this module's rule table first and, when it finds nothing, the semantic layer
(core/safety/semantic.py), which reads meaning the table has no phrase for. `assess_rules` is the table alone.

The rule-based layer, readable and testable line by line. A message is normalised (case, Unicode, apostrophes,
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
from re import _constants, _parser  # the stdlib's own regex parser (Python 3.11+), to read required words
from dataclasses import dataclass, field
from typing import Sequence

CATEGORIES = ("suicide", "self_harm", "abuse", "danger")
STRONG, WEAK = 1.0, 0.5
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


@dataclass(frozen=True)
class Rule:
    category: str
    name: str
    pattern: re.Pattern
    weight: float = STRONG
    unless: re.Pattern | None = None  # a figurative or accidental reading, looked for in the whole sentence
    past_ok: bool = False  # still a crisis when told as a past event (abuse disclosures)


def phrase(category: str, name: str, pattern: str, weight: float = STRONG, unless: str | None = None,
           past_ok: bool = False) -> Rule:
    """A rule from regex source written against `normalise`d text."""
    return Rule(category, name, re.compile(pattern), weight, re.compile(unless) if unless else None, past_ok)


# ---------------------------------------------------------------------------------------------------------------
# Normalisation. Patterns below are written against its output: lowercase ASCII words separated by single spaces,
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
    r"dreamt|dreamed|nightmare|nightmares|why do people|how do people|why do some people|why would someone|what "
    r"makes people|report|reports|reported|reporting)\b")
# A past that is over. Checked only up to the nearest contrast word, so "i used to be happy but now i want to
# die" still counts. Recent past ("last night", "yesterday") is not here on purpose.
_PAST = re.compile(
    r"\b(?:used to|years ago|year ago|months ago|last year|a while ago|long ago|long time ago|in the past|"
    r"when (?:i was|we were) (?:a |in |kids|children|young|little|younger|small|\d+|[a-z]+teen)|as (?:a )?"
    r"(?:kid|kids|child|children|teen|teenager|teenagers)|"
    r"back (?:then|in (?:high school|college|school|the day))|growing up|clean for|been clean|been sober|"
    r"in recovery|recovered|since then|the time (?:i|when))\b")


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
# Matching a table of rules. For speed a sentence is tried only against the rules whose required words it holds;
# those words are read from each pattern itself (not kept by hand), so a new rule can never be skipped wrongly.
# ---------------------------------------------------------------------------------------------------------------

def _required(items) -> frozenset[str] | None:
    """Strings of which every match of this parsed regex contains one; None when there is no such promise."""
    best: frozenset[str] | None = None

    def consider(candidate: frozenset[str] | None) -> None:
        nonlocal best
        rarity = (lambda c: min(len(s.strip()) for s in c))  # longer words are rarer, so they filter more
        if candidate and all(s.strip() for s in candidate) and (best is None or rarity(candidate) > rarity(best)):
            best = candidate

    run = ""
    for op, av in items:
        if op is _constants.LITERAL:
            run += chr(av)
            continue
        consider(frozenset([run]) if run else None)
        run = ""
        if op is _constants.SUBPATTERN:
            consider(_required(av[-1]))
        elif op is _constants.BRANCH:
            branches = [_required(branch) for branch in av[1]]
            consider(None if None in branches else frozenset().union(*branches))
        elif op in (_constants.MAX_REPEAT, _constants.MIN_REPEAT) and av[0] >= 1:
            consider(_required(av[2]))
        # anything else (\b, classes, lookarounds, optional parts) promises no literal text in the match
    consider(frozenset([run]) if run else None)
    return best


class RuleTable:
    """A table of rules matched sentence by sentence, with negation, hypotheticals, fiction and past set aside."""

    def __init__(self, rules: Sequence[Rule]):
        self.rules = tuple(rules)
        self._always: list[int] = []
        self._by_word: dict[str, list[int]] = {}
        for index, rule in enumerate(self.rules):
            words = _required(_parser.parse(rule.pattern.pattern))
            if words is None:
                self._always.append(index)
            for word in words or ():
                self._by_word.setdefault(word, []).append(index)

    def _candidates(self, text: str) -> list[Rule]:
        found = set(self._always)
        for word, indices in self._by_word.items():
            if word in text:
                found.update(indices)
        return [self.rules[i] for i in sorted(found)]

    def matches(self, normalised: str) -> tuple[dict[str, tuple[Rule, str]], list[str]]:
        """Counted matches {"category/name": (rule, excerpt)} and why the others were set aside."""
        counted, ignored = {}, []
        for sentence in _sentences(normalised):
            for rule in self._candidates(sentence.text):
                key = f"{rule.category}/{rule.name}"
                for match in rule.pattern.finditer(sentence.text):
                    why = _cancelled(rule, sentence, match)
                    if why is None:
                        counted.setdefault(key, (rule, match.group()))
                        break
                    ignored.append(f"'{match.group()}' ({why})")
        return counted, ignored


# ---------------------------------------------------------------------------------------------------------------
# The rules. Each is a phrase, never a lone keyword; comments say why a phrase is here or weak.
# ---------------------------------------------------------------------------------------------------------------

SUICIDE, SELF_HARM, ABUSE, DANGER = CATEGORIES
_INTENT = (r"(?:plan is to|want to|wants to|going to|about to|plan to|planning to|planning on|ready to|thinking about|"
           r"thinking of|think about|decided to|tempted to|urge to|need to|wish i could|will|should|might|trying to|"
           r"try to|tried to)")
_SELF_KILL = (r"(?:kill|killing|unalive|unaliving|off|offing|hang|hanging|shoot|shooting|drown|drowning|poison|"
              r"poisoning|suffocate|suffocating|stab|stabbing|electrocute|electrocuting)")
# Wanting, planning or musing, followed by one of many ways of saying dying.
_WISH = (r"(?:want|wants|wanting|wish|wishing|hope|hoping|pray|praying|need|needs|deserve|deserves|ready|plan|"
         r"plans|planning|decided|tempted|long|longing|trying|tried|try|would love|would like|rather|"
         r"wish i could|hope i|pray i|hope i can|wish i would|hope i will|easier to|better to|best to|courage to|"
         r"guts to|nerve to|strength to)")
_DEATH = (r"(?:die|be dead|be gone(?! by| for| before| from| until| when| soon| on| to)|stop living|stop existing|"
          r"not exist|never exist|cease to exist|not be alive|not be here anymore|not wake up|never wake up|"
          r"sleep forever|unalive|disappear forever|vanish|end it all|end it(?! with| between| off)|end my life|"
          r"end everything|kill myself|not live anymore|not be around anymore|go to sleep and never wake up)\b")
_MUSING = (r"(?:feel like|feeling like|felt like|thinking about|thinking of|think about|thought about|thoughts of|"
           r"thoughts about|considering|contemplating|dreaming of|dream of|fantasi[sz]ing about|obsessing over|"
           r"obsessed with|can not stop thinking about|keep thinking about)")
_DEATH_ING = (r"(?:dying|ending (?:it all|my life|everything|it|things)(?! with| between| off)|killing myself|"
              r"not existing|not being alive|not waking up|disappearing forever|being dead|being gone|"
              r"taking my (?:own )?life|suicide|my (?:own )?(?:death|funeral)|driving off (?:a|the) (?:cliff|bridge|"
              r"road)|jumping (?:off|from|in front of)|crashing my car|hanging myself|overdosing|slitting my wrists|"
              r"drowning myself|shooting myself)\b")
_OTHER_SELF = r"(?:himself|herself|themselves|themself|his (?:own )?life|her (?:own )?life|their (?:own )?lives?)"
_FILLER = r"(?:(?!(?:never|not|no longer|would|could|might|will) )\w+ )?"  # "my dad always hits me", not "never"
_ABUSER = (r"(?:he|she|they|(?:my |our )?(?:dad|mom|mum|father|mother|stepdad|stepfather|stepmom|stepmother|"
           r"husband|wife|boyfriend|girlfriend|partner|ex|uncle|aunt|brother|sister|parents|grandpa|grandfather|"
           r"teacher|coach|boss|cousin|fiance|fiancee|spouse|neighbor|neighbour|babysitter))")
_PERSON = (r"(?:someone|somebody|a car|a van|a truck|a man|a guy|a woman|a stranger|an intruder|a person|people|men|he|"
           r"she|they|my ex|my (?:husband|wife|boyfriend|girlfriend|partner|dad|father|stepdad|stepfather|neighbor|"
           r"neighbour|roommate|brother|son|mom|mother|uncle))")
# Not family: "my wife is going to kill me" is nearly always about a bill or a dent.
_STRANGER = (r"(?:someone|somebody|a man|a guy|a woman|a stranger|an intruder|a person|people|men|he|she|they|my ex|"
             r"my neighbou?r|my roommate)")
# "my wife is going to kill me when she sees the bill": the usual meaning of a threat told with a reason.
_FIGURATIVE_THREAT = (r"\b(?:when|if|once) (?:he|she|they|my \w+) (?:finds? out|sees?|learns?|hears?|gets? home|"
                      r"notices?|realizes?|knows?)\b|\bif i (?:am|get|do not|forget|fail|break|lose|miss|tell|eat|do|"
                      r"show)\b")
_BODY = r"(?:wrists?|arms?|legs?|thighs?|skin|stomach|body|hips?|ankles?)"
# Verbs that name self-harm with a body part; "hurt my ankle" is usually an accident, so hurt is not here.
_SELF_HARM_VERB = (r"cut|cutting|cuts|burn|burning|burned|burnt|burns|scratch|scratching|carve|carving|mutilate|"
                   r"mutilating|slice|slicing|sliced|slash|slashing|slashed|stab|stabbing")
_DRUGS = (r"(?:pills|tablets|meds|medication|medicine|painkillers|antidepressants|sleeping pills|tylenol|paracetamol|"
          r"acetaminophen|ibuprofen|advil|aspirin|xanax|benadryl|insulin|opioids|oxy|prescriptions?)")
# Play, sport and accidents: the usual reading of "he hit me", "she pushed me", "my brother beat me".
_NOT_VIOLENT = (r"\b(?:at (?:chess|cards|tennis|games?|\w+ball|monopoly|poker|golf|checkers|scrabble)|in (?:the|a|"
                r"every) (?:race|game|match|round)|to (?:it|the punch(?:line)?)|with (?:a |the )?(?:pillow|ball|"
                r"snowball|water|toy|nerf|joke)|by accident|accidentally|playing|as a joke|joking|prank|pool|"
                r"it (?:\w+ )?hit me|hit me (?:up|hard|that|how|like|when)|(?:hits|hitting) me up|choked me up|"
                r"pushed me to|tickl\w*|beats? me (?:\w+ )?(?:at|to|by|first|in (?:boxing|tennis|a|the))|with (?:a |"
                r"the |his |her )?car|kick(?:ed|s)? me out|out of|it (?:\w+ )?(?:hits|hitting) me|with (?:love|kisses|"
                r"hugs|questions|kindness)|attack(?:s|ed|ing)? me for|bees?|birds?|dogs?|geese|goose|wasps?|"
                r"mosquito(?:es)?|cockroach(?:es)?|aliens?|ghosts?)\b")
_ACCIDENT = (r"\b(?:cut myself (?:a|an|some|another)|saw|working|garage|tools?|by mistake|workshop|shaving|cooking|"
             r"chopping|slicing|peeling|by accident|accidentally|accident|playing|fell|fall|falling|tripped|slipped|"
             r"while|on (?:a|the|some) (?:glass|knife|paper|nail|edge|stove|oven|pan|iron|grill|fence|rock|corner)|"
             r"paper cut|gym|working out|kitchen|sunburn|dishes|trying to|bike|skateboard|game|practice|lifting|"
             r"ironing|baking|gardening|hiking|running|workout|doing the)\b")

RULES: tuple[Rule, ...] = (
    # --- suicide -------------------------------------------------------------------------------------------
    # Killing oneself named directly. Past "killed myself" is left out: said by the living it is hyperbole.
    phrase(SUICIDE, "kill_myself", rf"\b{_SELF_KILL} myself\b",
           unless=r"\bmyself (?:laughing|trying|working|studying|in the foot|at (?:the gym|work)|with (?:all )?(?:this|"
                  r"these|the|that|my|work|overtime|homework)|to (?:get|make|finish|meet|pass))\b|"
                  r"\bdrown(?:ing)? myself in (?!the (?:lake|river|ocean|sea|bath|pool|tub))"),
    phrase(SUICIDE, "end_my_life", r"\b(?:end|ending|take|taking|took) my (?:own )?life\b",
           unless=r"\bmy (?:own )?life (?:back|in|into|to the|seriously|more)\b|\blet (?:\w+ ){1,3}end my life\b"),
    phrase(SUICIDE, "end_it_all", r"(?<!the )\bend(?:ing)? (?:it all|everything|my existence|my (?:suffering|"
                                  r"pain) (?:for good|forever|permanently))\b"),
    phrase(SUICIDE, "end_it_soon", r"\bend it (?:all )?(?:tonight|today|now|soon|for good|this (?:week|weekend))\b|"
                                   r"\b(?:tonight|today|night|day) (?:is the (?:night|day) )?i (?:will |"
                                   r"am going to )?(?:finally )?(?:end it|do it)\b"),
    # "end it" / "ending things" with intent; a relationship names its partner ("end it with him").
    phrase(SUICIDE, "end_it", rf"\b(?:{_INTENT}|ready to|decided to|time to) (?:just )?end (?:it|things)\b(?! (?:with|"
                              rf"between|off))|\b(?:thinking about|thinking of|think about|considering) ending (?:it|"
                              rf"things)\b(?! (?:with|between|off))"),
    # A wish or plan (not "going to die": fear, hyperbole) for any way of saying death, not "die of embarrassment".
    phrase(SUICIDE, "death_wish", rf"\b{_WISH} (?:to )?(?:just |finally |simply |really )?{_DEATH}",
           unless=r"\bto die (?:of|from|laughing|for|happy|with|in peace|at|old|young|on|before|when)\b|\bdie for\b|"
                  r"\brather (?:\w+ )?(?:die|be dead)\b.*\bthan\b|\bdie (?:my|her|his|their|the) hair\b|"
                  r"\byou (?:\w+ )?(?:want|wish) to die\b"),
    phrase(SUICIDE, "death_thought", rf"\b{_MUSING} (?:just |about |of )?{_DEATH_ING}",
           unless=r"\bdying (?:my|her|his|the|their) hair\b|\bdying (?:of|from|laughing|to)\b"),
    phrase(SUICIDE, "wish_dead", r"\b(?:wish|hope|want) (?:that )?i (?:was|were|could be|would be|am)(?: just)? dead\b|"
                                 r"\bwant to be dead\b|\bbetter off dead\b|\brather (?:be dead|die|not be alive|"
                                 r"not exist)\b(?! than| of| from)"),
    phrase(SUICIDE, "wish_could_die", r"\b(?:wish|hope|pray) (?:that )?i (?:could|would|will|might) (?:just )?(?:die|"
                                      r"stop existing|not exist|sleep forever|disappear forever|not wake up)\b|"
                                      r"\b(?:want|wish|need) to (?:go to )?sleep forever\b"),
    phrase(SUICIDE, "should_die", r"\bi (?:should|might as well) (?:just )?die\b|\bnot (?:\w+ ){0,4}?be (?:around|here|"
                                  r"alive) (?:much|for much|any|a lot) longer\b|\bnot (?:\w+ ){0,4}?be (?:around|here|"
                                  r"alive) (?:after (?:this|tonight|today|tomorrow)|by (?:tomorrow|next|the end)|"
                                  r"next (?:week|month))\b",
           unless=r"\b(?:shift|work|office|in town|leaving|moving|vacation|trip|flight|job|school)\b"),
    phrase(SUICIDE, "never_born", r"\bwish i (?:had never been|was never|were never|was not|were not|had not been|"
                                  r"never was) born\b"),
    phrase(SUICIDE, "stop_existing", r"\b(?:want to|wish i could|just want to) (?:just )?(?:stop existing|not exist|"
                                     r"cease to exist|not be alive)\b"),
    phrase(SUICIDE, "not_wake_up", r"\b(?:hope|want|wish|pray|sleep|asleep) (?:and |to |i |"
                                   r"that i )?(?:\w+ ){0,2}?(?:never|not|do not|will not) wake up\b"),
    # The negation is part of these phrases; "live in/with/without/alone" are about places and people.
    phrase(SUICIDE, "not_in_this_world", r"\b(?:do not|no longer|never) (?:really |even )?want to (?:live|be|"
                                         r"exist) (?:in|on) this (?:world|earth|planet)\b"),
    phrase(SUICIDE, "not_want_to_live", r"\b(?:do not|no longer|never|not) (?:really |even )?(?:want|"
                                        r"deserve) to (?:live|be alive|exist|keep living|go on living|wake up|"
                                        r"be here anymore|go on anymore|be on this earth)\b",
           unless=r"\b(?:want|deserve) to (?:live|exist) (?:in|at|with|without|near|there|on|by|through|here|forever|"
                  r"as|next|under|alone|like that|that|this|a|the|to|again|up|it|my|your|their|his|her)\b|"
                  r"\blive (?:\w+ )?lives?\b"),
    phrase(SUICIDE, "unsure_to_live", r"\b(?:not sure|do not know) (?:if|whether) i (?:want to|can) (?:live|go on|"
                                      r"keep going|keep living|be alive)\b"),
    phrase(SUICIDE, "tired_of_living", r"\b(?:tired|sick|done|exhausted|fed up) (?:of|with) (?:living|being alive|life|"
                                       r"existing)\b(?! (?:insurance|coach|lessons?|in|at|with|on|here|the|a|an|like|"
                                       r"as|out|together|alone|paycheck|off))"),
    phrase(SUICIDE, "tired_of_my_life", r"\b(?:tired|sick|done|fed up) (?:of|with) (?:my life|this life|it all|"
                                        r"everything|fighting|trying|being here|being me)\b", WEAK),
    phrase(SUICIDE, "ready_to_go", r"\bi am ready to go$", WEAK),
    phrase(SUICIDE, "fine_if_i_die", r"\b(?:fine|okay|ok|good|better|a relief) if i (?:die|died|do not wake up|"
                                     r"never wake up)\b|\bif i (?:die|died) (?:tonight|tomorrow|today|"
                                     r"in my sleep)\b.{0,20}\b(?:fine|okay|ok|good|better|relief|whatever)\b|"
                                     r"\bdo not care (?:if|whether) i (?:live|die|wake up)\b|\bnot (?:afraid|"
                                     r"scared) (?:to die|of dying|of death) anymore\b"),
    phrase(SUICIDE, "no_reason_to_live",
           r"\b(?:no|any) (?:reason|point|purpose) (?:for me )?(?:in|to|for) (?:me |my )?(?:live|living|keep living|"
           r"going on|being alive|existing|stay alive|staying alive|me to live|me to keep living)\b|"
           r"\bnothing (?:left )?to live for\b|\b(?:life|living) is (?:not|no longer|not really) worth (?:it|living)\b|"
           r"\bnot worth living\b"),
    phrase(SUICIDE, "no_point_living", r"\b(?:do not|can not|no longer) see (?:the|any|a) (?:point|reason) (?:in|of|"
                                       r"to) (?:live|living|life|going on|being alive|existing|carrying on)\b|"
                                       r"\bwhat is the point (?:of|in) (?:me )?(?:even |still )?(?:living|being alive|"
                                       r"going on|existing|being here|staying alive|my life)\b"),
    # Hopelessness without life or death in it: common venting, weak.
    phrase(SUICIDE, "no_point_anything", r"\b(?:do not|can not|no longer) see (?:the|any|a) point (?:in|of|"
                                         r"to) (?:anything|trying)\b|\bwhat is the point (?:anymore|of anything|"
                                         r"of trying|of life)\b",
           WEAK),
    phrase(SUICIDE, "better_off_without_me", r"\b(?:better off|happier|better|"
                                             r"easier)(?: place| world)? (?:without (?:me|their (?:mom|mother|dad|"
                                             r"father|parent))|if i (?:was|were|am) (?:not |no longer )?(?:gone|dead|"
                                             r"here|around|alive)|if i (?:was|were|had) never (?:been )?born|if i died|"
                                             r"if i disappeared|with me gone|with me dead|when i am gone|"
                                             r"when i am dead|not existing|not being alive|not being here|"
                                             r"not living)\b"),
    phrase(SUICIDE, "no_one_would_care",
           r"\b(?:no one|nobody|would anyone|would anybody|does anyone|who) (?:would |will |even |really )*(?:care|"
           r"notice|miss me|cry|come to my funeral|realize)\b.{0,30}?\bif i (?:died|was gone|were gone|was dead|"
           r"were dead|disappeared|killed myself|was not here|were not here|was not around|ended it|die|"
           r"left forever)\b|\bif i (?:died|was gone|were gone|was dead|were dead|disappeared|killed myself|"
           r"was not here|were not here|was not around|die|left forever)\b.{0,30}?\b(?:no one|nobody|would anyone|"
           r"anyone) (?:would |will |even )*(?:care|notice|miss me|cry)\b|\b(?:no one|nobody) (?:will|would|"
           r"is going to) (?:even )?miss me\b|\bmiss me when i am (?:gone|dead)\b"),
    phrase(SUICIDE, "suicidal", r"\bsuicidal\b", unless=r"\b(?:he|she|they) (?:was|were) (?:\w+ )?suicidal\b"),
    phrase(SUICIDE, "suicide_thoughts",
           r"\b(?:think|thinking|thought|thoughts|considering|consider|contemplating|contemplate|planning|plan|plans|"
           r"urges?|obsessed|obsessing|researching|googling|searching|fantasi[sz]ing|daydreaming) (?:about |of |on "
           r"|with )?(?:suicide|killing myself|ending my life|ending it all|taking my (?:own )?life|hanging myself|"
           r"overdosing)\b"),
    # One's own dying and funeral; death in general is often grief, so weak.
    phrase(SUICIDE, "own_death_thoughts", r"\b(?:thinking|thoughts|think|obsessed|obsessing|fantasi[sz]ing|dreaming|"
                                          r"imagine|imagining|picture|picturing|planning) (?:about |of )?(?:dying|"
                                          r"being dead|my (?:own )?death|my (?:own )?funeral)\b(?! (?:my|her|his|"
                                          r"their) hair)"),
    phrase(SUICIDE, "death_thoughts", r"\b(?:thinking|thoughts|obsessed|obsessing|fantasi[sz]ing|dreaming) (?:about |"
                                      r"of )?death\b", WEAK),
    phrase(SUICIDE, "my_suicide", r"\bmy (?:own )?suicide\b"),
    phrase(SUICIDE, "commit_suicide",
           r"\bi (?:(?:am|will|would|might|may|could|should|want|to|going|thinking|of|about|plan|planning|tried|try|"
           r"have|think|just|really|almost|nearly|seriously|decided|ready) )*(?:commit|committing|attempt|attempted|"
           r"attempting|try|tried) suicide\b"),
    phrase(SUICIDE, "suicide_note", r"\b(?:suicide|goodbye) (?:note|letter)s?\b",
           unless=r"\b(?:his|her|their|found|read|reading)\b"),
    phrase(SUICIDE, "suicide_only_way",
           r"\b(?:suicide|death|dying|killing myself|ending it(?: all)?) (?:is|seems|feels|looks) (?:like )?(?:the |"
           r"my )?(?:only|best|easiest|last) (?:way|option|answer|choice|solution|way out|escape)\b|"
           r"\bsuicide\b.{0,25}\b(?:on my mind|in my head|crossing my mind)\b|\bno way out (?:except|but|"
           r"other than) (?:death|dying|suicide)\b"),
    phrase(SUICIDE, "only_way_out", r"\b(?:only|easy|easiest) way out\b", WEAK),
    # Asking for a crisis line is itself a signal; volunteering at one is not.
    phrase(SUICIDE, "crisis_line", r"\b(?:suicide|crisis) (?:hot ?line|help ?line|lifeline|text line|line)\b",
           unless=r"\b(?:volunteer|volunteering|volunteered|work at|works at|worked at|job)\b"),
    phrase(SUICIDE, "method_search",
           r"\bhow (?:painful|long|hard|easy|quick|fast|quickly|much does it hurt) (?:is it |would it be |does it "
           r"take |would it take |until you |to )?(?:to )?(?:hang|kill|shoot|drown|cut|slit) (?:yourself|myself|"
           r"your wrists|my wrists)\b|\benough to (?:die|kill (?:me|myself)|overdose|od)\b|"
           r"\bhow (?:long|fast|quickly) (?:does it take |would it take |until you |to )?(?:\w+ ){0,3}?(?:bleed out|"
           r"die|overdose|drown|suffocate)\b|\bwish (?:someone|somebody|something) would (?:just )?kill me\b|"
           r"\bhow (?:to|do i|can i|do you|does one|do people) (?:die|kill myself|kill yourself|end my life|overdose|"
           r"hang myself|commit suicide)\b|\bways to (?:die|kill myself|end my life|commit suicide)\b|\bhow (?:many|"
           r"much) (?:\w+ )?{_DRUGS} (?:it takes|does it take|would it take|to take)\b".replace("{_DRUGS}", _DRUGS)
          + r"|\bstaring at (?:the|my|a) (?:bottle of )?(?:pills|rope|noose|gun|blade|razor)\b|\b(?:painless|easiest|"
            r"quickest|fastest|best|easy|quick|surest|least painful) (?:way|ways|method|methods) to (?:die|kill myself|"
            r"end it|end my life|commit suicide|overdose)\b|\b(?:painless|least painful) (?:way|ways) to go\b|"
            r"\bhow (?:many|much)\b.{0,40}\b(?:to die|to overdose|to od|to kill (?:myself|me|a person)|lethal|fatal)\b|"
            r"\b(?:tie|tied|tying|make|made|bought|buy|have|got) (?:a |the )?noose\b"),
    phrase(SUICIDE, "method_intent",
           rf"\b{_INTENT} (?:just |finally )?(?:jump off|jump from|jump in front of|step in front of|walk into traffic|"
           rf"throw myself (?:off|in front of|under)|overdose|od|swallow (?:all|every|everything|a bunch|the whole)|"
           rf"take (?:all|every one) of (?:my|the|these) {_DRUGS}|drive (?:my car )?(?:off|into) (?:a |the )?(?:tree|"
           rf"wall|river|lake|bridge|cliff|pole|truck|oncoming traffic|traffic|ocean|sea)|pull the trigger|"
           rf"drown myself|walk into (?:the )?(?:ocean|sea|lake|river|traffic)|drink (?:some )?(?:bleach|antifreeze|"
           rf"poison|drain cleaner))\b"),
    phrase(SUICIDE, "method_named",
           r"\b(?:use|turn|point|pointing|put|hold|holding) (?:it|the gun|a gun|the knife|a knife|the blade) (?:on|to|"
           r"against|at) (?:myself|my (?:head|throat|wrists?|chest))\b|\bgun to my head\b|\bslit my (?:wrists?|"
           r"throat)\b|\bblow my (?:brains|head) out\b|\b(?:use|using|turn|turning) (?:it|them|that|this|the \w+|"
           r"a \w+) (?:on|against) myself\b",
           unless=r"\b(?:lotion|cream|shampoo|product|technique|trick|advice|mask|spray|brush|makeup|method)\b"),
    # Taking a whole supply at once is an overdose whatever the verb.
    phrase(SUICIDE, "take_all_pills", rf"\b(?:take|taking|swallow|swallowing) (?:all|every one|the whole bottle|"
                                      rf"a whole bottle) (?:of )?(?:my |the |these |those )?{_DRUGS}\b|\b(?:take|"
                                      rf"taking|swallow|swallowing) every (?:single )?(?:pill|tablet)\b"),
    # Each of these alone has an everyday reading; two together do not.
    phrase(SUICIDE, "pills_ready", rf"\b{_DRUGS} (?:in my hand|ready|lined up|in front of me)\b|\b(?:saved|saving|"
                                   rf"stockpiling|hoarding) (?:up )?(?:enough |all my |the )?{_DRUGS}\b", WEAK),
    phrase(SUICIDE, "take_them_all", r"\btake them (?:all|tonight|now|today)\b", WEAK),
    phrase(SUICIDE, "bottle_of_pills", rf"\b(?:bottle|box|pack|handful) of {_DRUGS}\b", WEAK),
    phrase(SUICIDE, "rope", r"\b(?:got|have|bought|tied|tie|tying) (?:a |the )?(?:rope|noose)\b(?! (?:ladder|swing|"
                            r"course))",
           WEAK),
    phrase(SUICIDE, "do_it", r"\b(?:going to|will|ready to|about to) (?:finally |really )?(?:do it|"
                             r"go through with it)\b",
           WEAK),
    phrase(SUICIDE, "nothing_left", r"\bnothing left (?:for me|in my life|to lose)\b", WEAK),
    phrase(SUICIDE, "giving_away", r"\b(?:gave|giving|give) away (?:all )?(?:of )?my (?:stuff|things|belongings|"
                                   r"possessions|pets?|clothes)\b", WEAK),
    phrase(SUICIDE, "affairs_in_order", r"\b(?:wrote|writing|made|making) (?:my|a) will\b|"
                                        r"\bput(?:ting)? my affairs in order\b", WEAK),
    phrase(SUICIDE, "crash_car", r"\b(?:crash|crashing|wreck|wrecking|drive|driving) (?:my|the) car (?:into|off|"
                                 r"on purpose)\b|\bcrash(?:ing)? my car\b", WEAK),
    phrase(SUICIDE, "enough_pills", rf"\benough (?:\w+ )?{_DRUGS}\b", WEAK),
    phrase(SUICIDE, "to_end_it", r"\bto end it(?: all)?\b(?! with| between| off)", WEAK),
    phrase(SUICIDE, "before_i_do_it", r"\bbefore i (?:do it|go through with it)\b", WEAK),
    # "if i was dead" and "better off" are common alone; together they are the thought.
    phrase(SUICIDE, "if_i_was_dead", r"\bif i (?:just |simply )?(?:was|were|am) (?:dead|gone|not (?:around|here|"
                                     r"alive))\b|\bif i died\b|\bwhen i am dead\b", WEAK),
    phrase(SUICIDE, "better_off", r"\b(?:better off|happier|be better|be easier|be fine|be relieved)\b", WEAK),
    phrase(SUICIDE, "on_the_edge", r"\b(?:standing|sitting|am|i am) on (?:the |a )?(?:roof|ledge|edge|bridge|"
                                   r"railing)\b",
           WEAK),
    phrase(SUICIDE, "going_to_jump", r"\b(?:going to|about to|want to|ready to) jump\b(?! (?:in|into|rope|on|up|at|"
                                     r"ship|start|to|the gun|around|out))", WEAK),
    phrase(SUICIDE, "not_here_tomorrow", r"\bwill not be (?:here|around|alive) (?:tomorrow|much longer|anymore|"
                                         r"for long|by (?:tomorrow|morning|the morning)|next (?:week|year))\b", WEAK),
    phrase(SUICIDE, "goodbye", r"\bthis is (?:my )?(?:final |last )?goodbye\b|\bgoodbye (?:forever|world|"
                               r"cruel world)\b|\bsaid (?:my )?goodbyes\b|\bsay goodbye (?:to (?:everyone|my family|"
                               r"you all|the world|my \w+ )?)?before i\b|\bmy last (?:message|text|words|night alive|"
                               r"day alive|day on earth)\b", WEAK),
    phrase(SUICIDE, "cannot_go_on", r"\bcan not (?:go on|keep going|do this|take (?:it|this|any more|anymore)|"
                                    r"handle (?:it|this|life)|cope|bear it|live like this|"
                                    r"keep doing this)(?: anymore| any longer| much longer)?\b(?! (?:the|a|with|to|at|"
                                    r"vacation|holiday|trips?|dates?))",
           WEAK),
    phrase(SUICIDE, "cannot_keep_living", r"\bcan not (?:keep living|go on living|continue living)\b"),
    phrase(SUICIDE, "want_it_over", r"\b(?:want|need|wish|hope) (?:for )?(?:it all|everything|all of (?:it|this)|"
                                    r"my life|life) (?:all )?to (?:end|be over|stop)\b"),
    phrase(SUICIDE, "want_pain_over", r"\b(?:want|need|wish|hope) (?:for )?(?:it|this|the pain|this pain|"
                                      r"the suffering) (?:all )?to (?:end|be over|stop|"
                                      r"go away)(?: forever| for good)?\b|\bwant to end it\b(?! with)", WEAK),
    phrase(SUICIDE, "disappear_forever", r"\b(?:want|wish|need) (?:to )?(?:just )?disappear (?:forever|for good|"
                                         r"permanently|from (?:this|the) (?:world|earth))\b"),
    phrase(SUICIDE, "want_to_disappear", r"\b(?:want|wish i could|need) (?:to )?(?:just )?disappear\b|"
                                         r"\bi (?:just )?want out\b(?! of)", WEAK),
    phrase(SUICIDE, "hate_being_alive", r"\bhate (?:being alive|existing|my existence)\b"),
    phrase(SUICIDE, "hate_my_life", r"\bhate (?:my life|myself|living)\b(?! (?:in|with|near|here|there|at|so))", WEAK),
    phrase(SUICIDE, "life_pointless", r"\b(?:my )?life is (?:so |just )?(?:pointless|meaningless|worthless|hopeless|"
                                      r"over|too hard|unbearable|not worth it|a mess|hell)\b", WEAK),
    phrase(SUICIDE, "hopeless", r"\bi (?:am|feel)(?: so| completely| totally| utterly| really| just)* (?:hopeless|"
                                r"worthless|empty inside|numb inside|dead inside|like a burden|a burden)\b|"
                                r"\bburden (?:to|on) (?:everyone|everybody|my family|my friends|you all)\b", WEAK),
    phrase(SUICIDE, "give_up_on_life", r"\bgiv(?:e|ing) up on (?:life|living|myself)\b", WEAK),
    # Someone else's present risk: the reply speaks to "you or someone near you". Past deaths are grief.
    phrase(SUICIDE, "other_wants_to_die",
           rf"\b(?:want|wants|wanted|going|planning|threatening|threatened|threatens|trying|tried|about|will|would) to "
           rf"(?:kill|hurt|harm|end|off|unalive|take) {_OTHER_SELF}\b|\b(?:will|would|might|could) (?:kill|hurt|harm|"
           r"end) (?:himself|herself|themselves|themself|his life|her life|their life)\b"),

    # --- self-harm -----------------------------------------------------------------------------------------
    phrase(SELF_HARM, "hurt_myself", rf"\b(?:{_SELF_HARM_VERB}|hurt|hurting|hurts|harm|harming|harmed) myself\b|"
                                     rf"\b(?:{_SELF_HARM_VERB}) my {_BODY}\b", unless=_ACCIDENT),
    phrase(SELF_HARM, "hurt_my_hands", rf"\b(?:{_SELF_HARM_VERB}) my (?:hands?|fingers?|face|head|neck|chest|feet)\b",
           WEAK, unless=_ACCIDENT),
    phrase(SELF_HARM, "self_harm", r"\bself (?:harm|harming|harmed|harms|injury|injuring|injure|mutilation|"
                                   r"mutilating)\b"),
    # Cutting without an object ("i keep cutting", "the urge to cut is strong"); cutting vegetables has one.
    phrase(SELF_HARM, "cutting", rf"\b(?:started|start|starting|keep|kept|been|am|i|stop|quit|relapsed and|urge to|"
                                 rf"urges to|want to|need to|going to|back to|began|begin) (?:cutting|cut)(?=$|"
                                 rf"(?: again| myself| my {_BODY}| to (?:cope|feel|numb|"
                                 rf"forget)| when| because| every| tonight| today| on purpose| is| so| deeper| and "
                                 rf"i)\b)", unless=_ACCIDENT),
    phrase(SELF_HARM, "into_my_skin", rf"\b(?:carve|carving|carved|cut|cutting|scratch|scratched|scratching|burn|"
                                      rf"burned|burning|burnt|etch|etched)\b(?: \w+){{0,3}} (?:into|in|"
                                      rf"on) my (?:\w+ )?{_BODY}\b",
           unless=_ACCIDENT),
    phrase(SELF_HARM, "fresh_cuts", rf"\b(?:fresh |new |deep )?(?:cuts|scars|burns) (?:on|all over) (?:my|her|his|"
                                    rf"their) (?:\w+ )?{_BODY}\b",
           unless=r"\b(?:from (?:the |a |my )?(?:rose|bush|bushes|thorns|cat|dog|glass|fall|accident|surgery|kitten)|"
                  r"surgery|accident|cat|kitten|garden)\b"),
    phrase(SELF_HARM, "relapsed", r"\brelapsed\b", WEAK),
    phrase(SELF_HARM, "bleed", r"\b(?:want|need|like|make myself|watch myself) (?:to )?bleed\b|\b(?:until|till|"
                               r"til) (?:i|it|they|my \w+|the skin) (?:bleed|bleeds|bled|bleeding)\b",
           unless=r"\b(?:mosquito|itch|itchy|rash|eczema|lips|gums|nose)\b"),
    phrase(SELF_HARM, "hide_cuts", r"\b(?:hide|hiding|cover|covering) (?:up )?(?:the |my )?(?:cuts|scars|burns|"
                                   r"wounds)\b",
           unless=r"\b(?:surgery|accident|acne|operation|section|tattoo|chicken pox|burn unit)\b"),
    phrase(SELF_HARM, "starving_myself", r"\b(?:starving|starve|starved) myself\b", WEAK),
    phrase(SELF_HARM, "purging", r"\bmak(?:e|ing) myself (?:throw up|vomit|puke|purge)\b|\bpurging\b", WEAK),
    phrase(SELF_HARM, "punch_myself", r"\b(?:punch|punching|punched|hit|hitting|slap|slapping|slapped|choke|choking|"
                                      r"strangle|strangling|bite|biting|bit) myself\b",
           unless=_ACCIDENT + r"|\bfor (?:being|forgetting|not|missing|doing|saying)\b|\bcould (?:slap|hit|"
                              r"punch) myself\b"),
    phrase(SELF_HARM, "hit_myself", r"\b(?:hit|hitting|bang|banging|slam|slamming) my head (?:on|against|into)\b|"
                                    r"\bpunch(?:ing)? walls?\b", WEAK),
    phrase(SELF_HARM, "on_purpose", r"\b(?:on purpose|deliberately|intentionally)\b", WEAK),
    phrase(SELF_HARM, "helps_me", r"\b(?:cutting|self harm|self harming|hurting myself|burning myself|the pain) (?:is|"
                                  r"was) (?:the only thing|what|all) (?:that )?(?:helps|works|makes me feel|calms|"
                                  r"keeps)\b|\bcutting (?:helps|calms|makes me feel)\b"),
    phrase(SELF_HARM, "blade_on_skin", rf"\b(?:razor|razors|blade|blades|lighter|scissors|knife|compass) (?:on|to|"
                                       rf"across|into) my (?:\w+ )?{_BODY}\b",
           unless=_ACCIDENT),
    phrase(SELF_HARM, "other_self_harm", r"\b(?:is|are|has been|have been|keeps|keep|started|been) (?:cutting|hurting|"
                                         r"harming|burning|starving|self harming) (?:himself|herself|themselves|"
                                         r"themself)\b|\b(?:cut|slit|slashed) (?:his|her|their) (?:wrists?|throat)\b"),

    # --- abuse (disclosures stay a crisis when told in the past) -------------------------------------------
    phrase(ABUSE, "hits_me", rf"\b{_ABUSER} {_FILLER}(?:hits|beats|kicks|punches|slaps|chokes|strangles|abuses|rapes|"
                             rf"molests|whips|smacks|burns|shoves|attacks|assaults|threatens) (?:me|us|"
                             rf"my (?:\w+ )?(?:mom|mother|mum|dad|father|sister|brother|kids|children|"
                             rf"baby)(?: and me)?)\b",
           unless=_NOT_VIOLENT),
    phrase(ABUSE, "hurts_me", rf"\b{_ABUSER} {_FILLER}hurts me\b|\b(?:keeps|kept|keep) hurting me\b", WEAK),
    phrase(ABUSE, "cannot_get_away", r"\bcan not (?:get away|escape|get out)\b", WEAK),
    phrase(ABUSE, "hurts_me_when", rf"\b{_ABUSER} {_FILLER}(?:hurts|hits|beats|slaps|chokes|kicks|"
                                   rf"punches) me when (?:he|she|they) (?:is|are|gets|get) (?:angry|drunk|mad|upset|"
                                   rf"high|jealous)\b"),
    # Told in the past by a named person: severe acts count; play and sport are the usual other reading.
    phrase(ABUSE, "hit_me_past", rf"\b{_ABUSER} {_FILLER}(?:choked|strangled|beat|punched|kicked|slapped|hit|pushed|"
                                 rf"shoved|burned|whipped|attacked) me\b", unless=_NOT_VIOLENT),
    phrase(ABUSE, "keeps_hitting_me", r"\b(?:keeps|keep|kept|been|is|are|was|were|started|starts|always) (?:hitting|"
                                      r"beating|kicking|punching|slapping|choking|strangling|abusing|raping|molesting|"
                                      r"threatening|assaulting|attacking) me\b",
           unless=_NOT_VIOLENT, past_ok=True),
    phrase(ABUSE, "hit_me_again", r"\b(?:hit|beat|kicked|punched|slapped|choked|strangled|shoved|smacked|"
                                  r"whipped) me (?:\w+ ){0,3}?(?:again|every|whenever|so hard|until|black and blue)\b|"
                                  r"\bbeat me up\b",
           unless=_NOT_VIOLENT, past_ok=True),
    phrase(ABUSE, "hit_me", r"\b(?:hit|beat|kicked|punched|slapped|choked|strangled|shoved|smacked|whipped) me\b", WEAK,
           unless=_NOT_VIOLENT),
    phrase(ABUSE, "touches_me", r"\b(?:touches|touching|touched|grabs|grabbing|grabbed|gropes|groping|"
                                r"groped) me\b.{0,40}\b(?:inappropriately|private|privates|there|"
                                r"without (?:my )?(?:consent|permission)|against my will|do not want|did not want|"
                                r"at night|under my|when no one|when nobody|in my bed|sexually|not to tell|our secret|"
                                r"a secret|when (?:she|he|they|my \w+|mom|dad) (?:is|are) not (?:home|around|there)|"
                                r"when we are alone)\b|\b(?:at night|into my (?:room|bed)|when no one|"
                                r"when nobody)\b.{0,40}\b(?:touches|touched|touching|gropes|groped) me\b",
           past_ok=True),
    phrase(ABUSE, "touches_me_weak", r"\b(?:touches|keeps touching) me\b", WEAK),
    phrase(ABUSE, "sexual_violence", r"\b(?:raped|molested|groped|sexually (?:assaulted|abused|harassed)|assaulted|"
                                     r"abused|trafficked|drugged) me\b|\bi (?:was|got|have been|am being|am|were|"
                                     r"had been|get) (?:\w+ )?(?:\w+ and )?(?:raped|molested|groped|"
                                     r"sexually (?:assaulted|abused|harassed)|assaulted|abused|trafficked|drugged|"
                                     r"beaten up|beat up)\b|\bforced (?:himself|herself|themselves) on me\b|"
                                     r"\b(?:victim|survivor) of (?:rape|sexual assault|abuse|domestic (?:violence|"
                                     r"abuse)|incest|trafficking)\b",
           past_ok=True),
    phrase(ABUSE, "abuser", r"\b(?:my|our) abusers?\b|\blive with (?:my|an) abuser\b", past_ok=True),
    phrase(ABUSE, "abusive", r"\b(?:in an?|my|leave (?:my|an?)) abusive (?:relationship|marriage|home|household|"
                             r"family|husband|wife|boyfriend|girlfriend|partner|parents?|dad|mom|father|mother|ex)\b|"
                             r"\b(?:he|she|my \w+) (?:is|gets|becomes|can be) (?:very |so |really )?(?:abusive|"
                             r"violent)\b"),
    phrase(ABUSE, "threatens_me", r"\bthreat(?:en|ens|ened|ening) to (?:kill|hurt|hit|beat|rape|shoot|stab|burn|"
                                  r"take (?:my|the) (?:kids|children|baby)) (?:me|us|my)\b|\b(?:said|says|"
                                  r"told me) (?:he|she|they) (?:would|will|is going to|was going to) (?:kill|hurt|hit|"
                                  r"beat|rape) me\b|\b(?:will|would|is going to|going to) (?:kill|hurt|hit|beat|"
                                  r"rape) me if i (?:leave|left|tell|told|call|called|go|try to leave|report|say|said|"
                                  r"speak|talk)\b",
           past_ok=True),
    phrase(ABUSE, "afraid_of_harm", rf"\b(?:afraid|scared|terrified|frightened|worried|think|"
                                    rf"sure) (?:that )?{_ABUSER} (?:will|is going to|might|would|"
                                    rf"could) (?:\w+ ){{0,4}}?(?:kill|hurt|hit|beat|rape|attack|find) (?:me|us)\b"),
    phrase(ABUSE, "threatening_me", r"\bthreaten(?:s|ed|ing) (?:me|us|my life)\b",
           unless=r"\bwith (?:a )?(?:detention|grounding|chores|a fine|legal|a lawsuit|lawyers?|time out|no)\b"),
    phrase(ABUSE, "pushes_me_around", r"\b(?:pushes|pushed|pushing|shoves|shoving|throws|throwing) me (?:around|"
                                      r"against|into|down)\b", WEAK),
    phrase(ABUSE, "calls_me_names", r"\bcalls? me (?:worthless|stupid|useless|fat|ugly|names|a whore|a slut|a bitch|"
                                    r"pathetic|nothing)\b", WEAK),
    phrase(ABUSE, "shows_up", rf"\b{_ABUSER} {_FILLER}(?:keeps|kept|has been) (?:showing up|turning up|waiting) (?:at|"
                              rf"outside) my\b", WEAK),
    phrase(ABUSE, "will_hurt_me", rf"\b{_ABUSER} (?:will|is going to|would) (?:hurt|hit|beat|rape) me\b", WEAK),
    phrase(ABUSE, "scared_of_home", r"\b(?:scared|afraid|terrified) (?:to go|of going) home\b|\b(?:scared|afraid|"
                                    r"terrified|frightened) of (?:him|her|them|my (?:dad|father|mom|mother|stepdad|"
                                    r"stepfather|stepmom|husband|wife|boyfriend|girlfriend|partner|ex|uncle|brother|"
                                    r"parents))\b", WEAK),
    phrase(ABUSE, "controlled", r"\b(?:will not|does not|would not|never) let me (?:leave (?:the house|home|the room|"
                                r"him|her)|see (?:anyone|my family)|talk to anyone|call anyone)\b|\block(?:s|"
                                r"ed)? me (?:in|inside) (?:my|the|a) (?:room|closet|basement|house|bathroom|car|cellar|"
                                r"shed)\b"),
    phrase(ABUSE, "isolated", r"\b(?:will not|does not|would not|never) let me (?:see|talk to|call|"
                              r"go out with) (?:my )?(?:friends|family|anyone)\b", WEAK),
    phrase(ABUSE, "monitored", r"\b(?:checks|tracks|reads|goes through) my (?:phone|messages|location)\b|"
                               r"\bcontrols (?:all )?my (?:money|phone|life)\b|\btakes? my (?:phone|money|"
                               r"keys) (?:away )?so i can not\b", WEAK),
    phrase(ABUSE, "forced", r"\bforc(?:es|ed|ing|e) me to (?:have sex|do things|touch|watch|sleep with|kiss|perform)\b|"
                            r"\b(?:makes|made|making|forces|forced|forcing) me (?:to )?(?:do |have |watch |"
                            r"perform )?(?:sexual|sex) (?:things|stuff|acts)\b",
           past_ok=True),
    phrase(ABUSE, "domestic_violence", r"\bdomestic (?:violence|abuse)\b", WEAK),

    # --- immediate danger ----------------------------------------------------------------------------------
    phrase(DANGER, "break_in", rf"\b{_PERSON} (?:is|are) (?:trying to |about to )?(?:break|breaking) (?:in|into|"
                               rf"down)\b|\b(?:is|are|keeps|keep) (?:trying|tries) to (?:get|break|force (?:his|her|"
                               rf"their|the) way) (?:in|inside)\b(?! (?:touch|shape|trouble|line|the (?:car|game|"
                               rf"habit)))|\b(?:is|are) (?:trying to )?(?:break|breaking|kick|kicking|bang|banging|"
                               rf"pound|pounding) (?:down )?(?:on )?(?:the|my|our) (?:door|"
                               rf"window)s?(?: down| in| open)?\b"),
    phrase(DANGER, "intruder", r"\b(?:there is|there are) (?:someone|somebody|a man|a guy|a woman|a stranger|"
                               r"an intruder|people|a person|men|strangers) (?:in|inside) (?:my|the|our) (?:house|home|"
                               r"room|apartment|flat|bedroom|building|backyard|yard|garden|garage)\b|\b(?:someone|"
                               r"somebody|a (?:\w+ )?(?:man|guy|woman|person)|a stranger|an intruder|people|"
                               r"men) (?:is |are )?outside (?:my|our) (?:bedroom )?(?:window|bedroom|room)\b",
           unless=r"\blooks? (?:a lot )?like\b|\blike (?:someone|somebody|there)\b|\b(?:always|sometimes) think\b|"
                  r"\bfeels? like\b"),
    phrase(DANGER, "just_broke_in", r"\b(?:just|has|have) (?:broken|broke) in(?:to)?\b|\b(?:is|"
                                    r"are) breaking in(?:to)?\b|\b(?:broke|broken) in(?:to)?\b.{0,40}\b(?:right now|"
                                    r"is (?:still )?(?:here|inside|downstairs|upstairs|in the house))\b"),
    phrase(DANGER, "attacked", r"\bi (?:was|got|have been|am being|just got) (?:\w+ )?(?:jumped|mugged|stabbed|shot|"
                               r"kidnapped|abducted|taken hostage)\b|\b(?:is|are) (?:dragging|pulling|"
                               r"forcing) me (?:into|in|to|out)\b",
           unless=r"\b(?:paintball|airsoft|laser tag|nerf|aliens?|ghosts?|ufo|by a (?:dog|bird|goose|bee|wasp|swarm|"
                  r"cat))\b"),
    phrase(DANGER, "unconscious", r"\b(?:is|are) (?:unconscious|unresponsive|passed out and)\b|\b(?:is|"
                                  r"are) not (?:breathing|responsive)\b"),
    phrase(DANGER, "drank_and_pills", r"\bdrank (?:a|an entire|a whole|the whole) bottle of\b", WEAK),
    phrase(DANGER, "took_pills", rf"\btook (?:some |my |the |a few )?(?:\w+ )?{_DRUGS}\b|\boverdosed\b", WEAK),
    phrase(DANGER, "trapped", r"\bi am (?:stuck|trapped) (?:in|inside|under)\b|\bi am trapped\b", WEAK),
    phrase(DANGER, "fire", r"\b(?:there is a|is on) fire\b|\bflood(?: water|ing|waters)?\b|\bwater (?:is )?rising\b",
           WEAK),
    phrase(DANGER, "drugged", r"\bdrugged (?:me|my (?:drink|food|coffee))\b|\b(?:spiked|put something in) my drink\b|"
                              r"\bi (?:think i )?(?:was|got|have been) drugged\b"),
    phrase(DANGER, "intruder_inside", r"\b(?:someone|somebody|a man|a guy|a stranger|an intruder|strangers) (?:is|"
                                      r"are) (?:in|inside) (?:my|the|our) (?:house|home|room|apartment|flat|"
                                      r"bedroom)\b"),
    phrase(DANGER, "hiding", r"\bi am hiding (?:in|under|from)\b|\bhiding (?:from (?:him|her|them|my \w+)|in (?:the|"
                             r"my) (?:closet|bathroom|wardrobe|basement|attic))\b", WEAK),
    phrase(DANGER, "rage", rf"\b{_ABUSER} (?:is|are) (?:drunk|high|yelling|screaming|raging|violent|out of control|"
                           rf"throwing things|smashing things)\b", WEAK),
    phrase(DANGER, "at_my_door", rf"\b{_PERSON} (?:is|are) (?:outside|at|banging on|in front of) (?:my|our|"
                                 rf"the) (?:door|window|house|room|apartment|home)\b|\bthere is (?:someone|somebody|"
                                 r"a man|a guy|a stranger) (?:outside|at) (?:my|our|the) (?:door|house)\b", WEAK),
    phrase(DANGER, "dying_now", r"\bi (?:think i )?am dying\b(?! (?:to|of|for|laughing|inside|here))", WEAK),
    phrase(DANGER, "followed", rf"\b{_PERSON} (?:is|are|keeps|has been|have been|been) (?:following|stalking|"
                               rf"chasing) me\b",
           unless=r"\b(?:on|around) (?:instagram|twitter|tiktok|ig|insta|facebook|youtube|social media|snapchat)\b|"
                  r"\b(?:puppy|dog|cat|kitten|kid|baby|toddler)\b|\bfollowing me (?:back|around)\b"),
    phrase(DANGER, "not_safe", r"\bi am (?:in (?:danger|immediate danger)|not safe|unsafe|being (?:followed|chased|"
                               r"attacked|held|kidnapped|hunted|stalked|threatened))\b(?! (?:of|to|zone|"
                               r"by (?:\w+ )?(?:of )?(?:cockroaches|mosquitoes|bugs|ants|bees|wasps|birds|geese|aliens|"
                               r"ghosts)))|\b(?:do not|no longer|never) feel safe (?:at home|here|"
                               r"in my (?:own )?(?:home|house|room)|with (?:him|her|them|my \w+)|around (?:him|her|"
                               r"them|my \w+)|anymore)\b"),
    phrase(DANGER, "weapon", rf"\b{_PERSON} (?:has|have|is holding|is pointing|pulled|is waving|got) (?:a |an |his |"
                             rf"her )?(?:gun|knife|weapon|rifle|pistol|machete)\b|\b(?:with|has|is holding|grabbed|"
                             rf"is waving|pulled out) (?:a|an|his|her) (?:gun|knife|weapon|rifle|pistol|machete)\b",
           WEAK),
    phrase(DANGER, "armed_stranger", r"\b(?:there is|there are) (?:someone|somebody|a man|a guy|a woman|a stranger|"
                                     r"people|men) (?:with|holding|pointing) (?:a |an )?(?:gun|knife|weapon|rifle|"
                                     r"pistol|machete)\b"),
    phrase(DANGER, "armed_threat", rf"\b(?:{_PERSON}) (?:is |are )?(?:going to|trying to|about to|wants to|coming to|"
                                   rf"will) (?:shoot|stab|rape|murder|attack|strangle|choke|beat|kidnap) (?:me|us)\b",
           unless=_FIGURATIVE_THREAT),
    # "my wife is going to kill me when she sees the bill" is the usual meaning; the cues say so.
    phrase(DANGER, "kill_threat", rf"\b{_STRANGER} (?:is |are )?(?:going to|trying to|about to|wants to|coming to|"
                                  rf"will) kill (?:me|us)\b|\b{_STRANGER} (?:is |are )?(?:going to|trying to|about to|"
                                  rf"coming to) (?:come back and )?hurt (?:me|us)\b", unless=_FIGURATIVE_THREAT),
    phrase(DANGER, "pills_taken", rf"\b(?:took|swallowed|downed|ate|chugged|overdosed on) (?:(?:way |far )?too many|"
                                  rf"a lot of|all (?:of )?(?:my|the|his|her)|a bunch of|the whole (?:bottle|pack|"
                                  rf"box)(?: of)?|an entire (?:bottle|pack|box)(?: of)?|a handful of|a whole (?:bottle|"
                                  rf"pack|box)(?: of)?|[1-9]\d+) (?:\w+ )?{_DRUGS}\b"),
    phrase(DANGER, "overdosing", r"\b(?:am|is|are) (?:\w+ )?overdosing\b|\bi (?:just |have |think i |might have |"
                                 r"may have )?(?:overdosed|od)\b|\b(?:am|is|are|think i am|think he is|"
                                 r"think she is) having an overdose\b"),
    phrase(DANGER, "bleeding", r"\b(?:i am|am|is|are|keeps|keep) bleeding (?:a lot|badly|heavily|so much|everywhere|"
                               r"out|to death)\b|\b(?:will not|can not|does not) stop bleeding\b|"
                               r"\bbleeding and it (?:will not|does not|can not) stop\b"),
    phrase(DANGER, "not_breathing", r"\b(?:is not|are not|stopped|has stopped) breathing\b"),
    phrase(DANGER, "will_not_wake", r"\b(?:will not|can not|does not) wake up\b(?! (?:for|in|early|on time|until|"
                                    r"before|when|at))", WEAK),
    phrase(DANGER, "harm_others",
           r"\bi (?:am going to|want to|will|am about to|am planning to|plan to|feel like|have the urge to|need to|"
           r"am thinking about|keep thinking about) (?:kill|killing|hurt|hurting|shoot|shooting|stab|stabbing|murder|"
           r"murdering|poison|poisoning|strangle|strangling) (?:someone|somebody|people|everyone|everybody|them all|"
           r"him|her|them|my \w+)\b",
           unless=r"\b(?:if|when|unless) (?:he|she|they|you|it|my \w+)\b|\b(?:by accident|accidentally|ruined|spilled|"
                  r"broke my|ate my)\b|\bfor (?:eating|taking|being|doing|not|using|"
                  r"that|this|what)\b|\b(?:lol|haha|lmao|jk)\b|\bmy (?:\w+ )?(?:cat|dog|puppy|kitten|phone|computer|"
                  r"laptop|plants?|car|alarm|tv)\b"),
    phrase(DANGER, "mass_violence", r"\bshoot up (?:the|my|a|our) (?:school|office|work|church|mall|class|campus|party|"
                                    r"workplace)\b|\b(?:bring|bringing|take|taking) (?:a |my |the )?(?:gun|rifle|bomb|"
                                    r"weapon) to (?:school|work|class|church|campus)\b|\b(?:plant|planting|build|"
                                    r"building|make|making) a bomb\b"),
    phrase(DANGER, "help_now", r"\b(?:please help(?: me)?|help me please|call (?:911|999|112|the police|the cops|"
                               r"an ambulance) (?:please|now|right now))\b", WEAK),
)


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
