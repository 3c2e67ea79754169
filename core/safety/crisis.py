"""Crisis recognition: does a message express suicidal thoughts, self-harm, abuse or immediate danger?

A rule-based layer, readable and testable line by line. A message is normalised (case, Unicode, apostrophes,
texting abbreviations, common misspellings, leetspeak), split into sentences, and each sentence is matched against
a table of phrase patterns per category. Every pattern is a phrase, never a lone keyword, and carries a weight:
strong phrases (1.0) decide alone, weak ones (0.5) only together with another signal, either in the same message or
from a crisis message earlier in the conversation. A match is ignored when, in its own clause, it is negated
("I would never hurt myself"), hypothetical ("if I ever felt like..."), about fiction or a report, told as a past
that is over ("I used to self-harm but...") or when a pattern's own figurative/accident cue is in the sentence
("I cut myself shaving", "I killed myself laughing").

Decisions (documented in docs/safety.md): a present risk to someone else ("my friend says she wants to kill
herself") is a crisis, because the fixed reply speaks to "you or someone near you"; grief over a past death ("my
friend committed suicide last year") is not. Disclosures of sexual or physical abuse stay a crisis in the past
tense, because a generative model should not improvise a reply to them.
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

_NEGATION = re.compile(r"\b(?:not|never|nor|neither|no longer|no way)\b")
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
    r"dreamt|dreamed|nightmare|nightmares)\b")
# A past that is over. Checked only up to the nearest contrast word, so "i used to be happy but now i want to
# die" still counts. Recent past ("last night", "yesterday") is not here on purpose.
_PAST = re.compile(
    r"\b(?:used to|years ago|year ago|months ago|last year|a while ago|long ago|long time ago|in the past|"
    r"when i was (?:a |in |young|little|younger|small|\d+|[a-z]+teen)|as a (?:kid|child|teen|teenager)|"
    r"back (?:then|in (?:high school|college|school|the day))|growing up|clean for|been clean|been sober|"
    r"in recovery|recovered|since then|the time (?:i|when))\b")


def _cancelled(rule: Rule, sentence: _Sentence, match: re.Match) -> str | None:
    """Why this match does not count, or None when it does."""
    start = sentence.token_at(match.start())
    end = sentence.token_at(max(match.start(), match.end() - 1)) + 1
    clause = sentence.clause_start(start)
    prefix = " ".join(sentence.tokens[clause:start])
    window = _NOT_NEGATING.sub("_", prefix).split()[-_NEGATION_WINDOW:]
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
_INTENT = (r"(?:plan is to|want to|wants to|going to|about to|plan to|planning to|planning on|ready to|thinking about|thinking of|"
           r"think about|decided to|tempted to|urge to|need to|wish i could|will|should|might|trying to|try to|"
           r"tried to)")
_SELF_KILL = (r"(?:kill|killing|unalive|unaliving|off|offing|hang|hanging|shoot|shooting|drown|drowning|poison|"
              r"poisoning|suffocate|suffocating|stab|stabbing|electrocute|electrocuting)")
# Wanting, planning or musing, followed by one of many ways of saying dying.
_WISH = (r"(?:want|wants|wanted|wanting|wish|wishing|hope|hoping|pray|praying|need|needs|deserve|deserves|ready|plan|"
         r"plans|planning|decided|tempted|long|longing|trying|tried|try|would love|would like|rather|"
         r"wish i could|hope i|pray i|i could just|hope i can|wish i would|hope i will)")
_DEATH = (r"(?:die|be dead|be gone(?! by| for| before| from| until| when| soon| on| to)|stop living|stop existing|not exist|"
          r"never exist|cease to exist|not be alive|not be here anymore|not wake up|never wake up|sleep forever|unalive|"
          r"disappear forever|vanish|end it all|end my life|end everything|kill myself|not live anymore|"
          r"not be around anymore|go to sleep and never wake up)\b")
_MUSING = (r"(?:feel like|feeling like|felt like|thinking about|thinking of|think about|thought about|thoughts of|"
           r"thoughts about|considering|contemplating|dreaming of|dream of|fantasi[sz]ing about|obsessing over|"
           r"obsessed with|can not stop thinking about|keep thinking about)")
_DEATH_ING = (r"(?:dying|ending (?:it all|my life|everything|it|things)(?! with| between| off)|killing myself|not existing|"
              r"not being alive|not waking up|disappearing forever|being dead|being gone|taking my (?:own )?life|"
              r"suicide|my (?:own )?(?:death|funeral))\b")
_OTHER_SELF = r"(?:himself|herself|themselves|themself|his (?:own )?life|her (?:own )?life|their (?:own )?lives?)"
_ABUSER = (r"(?:he|she|they|(?:my |our )?(?:dad|mom|mum|father|mother|stepdad|stepfather|stepmom|stepmother|"
           r"husband|wife|boyfriend|girlfriend|partner|ex|uncle|aunt|brother|sister|parents|grandpa|grandfather|"
           r"teacher|coach|boss|cousin|fiance|fiancee|spouse|neighbor|neighbour|babysitter))")
_PERSON = (r"(?:someone|somebody|a man|a guy|a woman|a stranger|an intruder|a person|people|men|he|she|they|"
           r"my ex|my (?:husband|wife|boyfriend|girlfriend|partner|dad|father|stepdad|stepfather|neighbor|neighbour|"
           r"roommate|brother|son|mom|mother|uncle))")
# "my wife is going to kill me when she sees the bill": the usual meaning of a threat told with a reason.
_FIGURATIVE_THREAT = (r"\b(?:when|if|once) (?:he|she|they|my \w+) (?:finds? out|sees?|learns?|hears?|gets? home|"
                      r"notices?|realizes?|knows?)\b|\bif i (?:am|get|do not|forget|fail|break|lose|miss|tell|eat|do|"
                      r"show)\b")
_BODY = r"(?:wrists?|arms?|legs?|thighs?|skin|stomach|body|hips?|ankles?)"
_SELF_HARM_VERB = (r"cut|cutting|cuts|burn|burning|burned|burnt|burns|hurt|hurting|hurts|harm|harming|harmed|scratch|"
                   r"scratching|carve|carving|mutilate|mutilating|slice|slicing|sliced|slash|slashing|slashed|stab|"
                   r"stabbing|bruise|bruising")
_DRUGS = (r"(?:pills|tablets|meds|medication|medicine|painkillers|antidepressants|sleeping pills|tylenol|paracetamol|"
          r"acetaminophen|ibuprofen|advil|aspirin|xanax|benadryl|insulin|opioids|oxy|prescriptions?)")
# Play, sport and accidents: the usual reading of "he hit me", "she pushed me", "my brother beat me".
_NOT_VIOLENT = (r"\b(?:at (?:chess|cards|tennis|games?|\w+ball|monopoly|poker|golf|checkers|scrabble)|in (?:the|a|every) "
                r"(?:race|game|match|round)|to (?:it|the punch(?:line)?)|with (?:a |the )?(?:pillow|ball|snowball|water|"
                r"toy|nerf|joke)|by accident|accidentally|playing|as a joke|joking|prank|pool|it (?:\w+ )?hit me|hit me "
                r"(?:up|hard|that|how|like|when)|(?:hits|hitting) me up|choked me up|pushed me to|tickl\w*|beats? me (?:\w+ )?(?:at|"
                r"to)|with (?:a |the |his |her )?car)\b")
_ACCIDENT = (r"\b(?:shaving|cooking|chopping|slicing|peeling|by accident|accidentally|accident|playing|fell|fall|"
             r"falling|tripped|slipped|while|on (?:a|the|some) (?:glass|knife|paper|nail|edge|stove|oven|pan|iron|"
             r"grill|fence|rock|corner)|paper cut|gym|working out|kitchen|sunburn|dishes|trying to|bike|"
             r"skateboard|game|practice|lifting|ironing|baking|gardening|hiking|running|workout|doing the)\b")

RULES: tuple[Rule, ...] = (
    # --- suicide -------------------------------------------------------------------------------------------
    # Killing oneself named directly. Past "killed myself" is left out: said by the living it is hyperbole.
    phrase(SUICIDE, "kill_myself", rf"\b{_SELF_KILL} myself\b",
          unless=r"\bmyself (?:laughing|trying|working|studying|in the foot|at (?:the gym|work)|with (?:all )?(?:this|"
                 r"these|the|that|my|work|overtime|homework)|"
                 r"to (?:get|make|finish|meet|pass))\b"),
    phrase(SUICIDE, "end_my_life", r"\b(?:end|ending|take|taking|took) my (?:own )?life\b",
          unless=r"\bmy (?:own )?life (?:back|in|into|to the|seriously|more)\b"),
    phrase(SUICIDE, "end_it_all", r"(?<!the )\bend(?:ing)? (?:it all|everything|my existence|my (?:suffering|pain) "
                                 r"(?:for good|forever|permanently))\b"),
    phrase(SUICIDE, "end_it_soon", r"\bend it (?:all )?(?:tonight|today|now|soon|for good|this (?:week|weekend))\b|"
                                  r"\b(?:tonight|today|night|day) (?:is the (?:night|day) )?i (?:will )?end it\b"),
    # "end it" / "ending things" with intent; a relationship names its partner ("end it with him").
    phrase(SUICIDE, "end_it", rf"\b(?:{_INTENT}|ready to|decided to|time to) (?:just )?end (?:it|things)\b(?! (?:with|between|off))|"
                             r"\b(?:thinking about|thinking of|think about|considering) ending (?:it|things)\b"
                             r"(?! (?:with|between|off))"),
    # A wish or plan (not "going to die": fear, hyperbole) for any way of saying death, not "die of embarrassment".
    phrase(SUICIDE, "death_wish", rf"\b{_WISH} (?:to )?(?:just |finally |simply |really )?{_DEATH}",
          unless=r"\bto die (?:of|from|laughing|for|happy|with|in peace|at|old|young|on|before|when)\b|\bdie for\b|"
                 r"\brather (?:\w+ )?(?:die|be dead)\b.*\bthan\b|\bdie (?:my|her|his|their|the) hair\b"),
    phrase(SUICIDE, "death_thought", rf"\b{_MUSING} (?:just |about |of )?{_DEATH_ING}",
          unless=r"\bdying (?:my|her|his|the|their) hair\b|\bdying (?:of|from|laughing|to)\b"),
    phrase(SUICIDE, "wish_dead", r"\b(?:wish|hope|want) (?:that )?i (?:was|were|could be|would be|am)(?: just)? dead\b|"
                                r"\bwant to be dead\b|\bbetter off dead\b|\brather (?:be dead|die|not be alive|not exist)\b(?! than)"),
    phrase(SUICIDE, "wish_could_die", r"\b(?:wish|hope|pray) (?:that )?i (?:could|would|will|might) (?:just )?(?:die|stop "
                                     r"existing|not exist|sleep forever|disappear forever|not wake up)\b|\b(?:want|wish|"
                                     r"need) to (?:go to )?sleep forever\b"),
    phrase(SUICIDE, "should_die", r"\bi (?:should|might as well) (?:just )?die\b|\bnot (?:\w+ ){0,4}?be (?:around|here|"
                                 r"alive) (?:much|for much|any|a lot) longer\b|\bnot (?:\w+ ){0,4}?be (?:around|here|alive) (?:after (?:this|"
                                 r"tonight|today|tomorrow)|by (?:tomorrow|next|the end)|next (?:week|month))\b",
          unless=r"\b(?:shift|work|office|in town|leaving|moving|vacation|trip|flight|job|school)\b"),
    phrase(SUICIDE, "never_born", r"\bwish i (?:had never been|was never|were never|was not|were not|had not been|"
                                 r"never was) born\b"),
    phrase(SUICIDE, "stop_existing", r"\b(?:want to|wish i could|just want to) (?:just )?(?:stop existing|not exist|"
                                    r"cease to exist|not be alive)\b"),
    phrase(SUICIDE, "not_wake_up", r"\b(?:hope|want|wish|pray|sleep|asleep) (?:and |to |i |that i )?(?:\w+ ){0,2}?"
                                  r"(?:never|not|do not|will not) wake up\b"),
    # The negation is part of these phrases; "live in/with/without/alone" are about places and people.
    phrase(SUICIDE, "not_want_to_live", r"\b(?:do not|no longer|never|not) (?:really |even )?(?:want|deserve) to (?:live|"
                                       r"be alive|exist|keep living|go on living|wake up|be here anymore|go on "
                                       r"anymore|be on this earth)\b",
          unless=r"\bwant to (?:live|exist) (?:in|at|with|without|near|there|on|by|through|here|forever|as|next|"
                 r"under|alone|like that|that|this|a|the|to)\b"),
    phrase(SUICIDE, "unsure_to_live", r"\b(?:not sure|do not know) (?:if|whether) i (?:want to|can) (?:live|go on|"
                                     r"keep going|keep living|be alive)\b"),
    phrase(SUICIDE, "tired_of_living", r"\b(?:tired|sick|done|exhausted|fed up) (?:of|with) (?:living|being alive|"
                                      r"life|existing)\b(?! (?:insurance|coach|lessons?|in|at|with|on|here))"),
    phrase(SUICIDE, "tired_of_my_life", r"\b(?:tired|sick|done|fed up) (?:of|with) (?:my life|this life|it all|"
                                       r"everything|fighting|trying|being here|being me)\b", WEAK),
    phrase(SUICIDE, "ready_to_go", r"\bi am ready to go$", WEAK),
    phrase(SUICIDE, "fine_if_i_die", r"\b(?:fine|okay|ok|good|better|a relief) if i (?:die|died|do not wake up|never wake up)\b|"
                                    r"\bif i (?:die|died) (?:tonight|tomorrow|today|in my sleep)\b.{0,20}\b(?:fine|okay|"
                                    r"ok|good|better|relief|whatever)\b|\bdo not care (?:if|whether) i (?:live|die|"
                                    r"wake up)\b|\bnot (?:afraid|scared) (?:to die|of dying|of death) anymore\b"),
    phrase(SUICIDE, "no_reason_to_live",
          r"\b(?:no|any) (?:reason|point|purpose) (?:for me )?(?:in|to|for) (?:me |my )?(?:live|living|keep living|going on|"
          r"being alive|existing|stay alive|staying alive|me to live|me to keep living)\b|"
          r"\bnothing (?:left )?to live for\b|\b(?:life|living) is (?:not|no longer|not really) worth (?:it|living)\b|"
          r"\bnot worth living\b"),
    phrase(SUICIDE, "no_point_living", r"\b(?:do not|can not|no longer) see (?:the|any|a) (?:point|reason) (?:in|of|to) "
                                      r"(?:live|living|life|going on|being alive|existing|carrying on)\b|"
                                      r"\bwhat is the point (?:of|in) (?:me )?(?:even |still )?(?:living|life|being alive|going on|existing|being "
                                      r"here|staying alive|my life)\b"),
    # Hopelessness without life or death in it: common venting, weak.
    phrase(SUICIDE, "no_point_anything", r"\b(?:do not|can not|no longer) see (?:the|any|a) point (?:in|of|to) "
                                        r"(?:anything|trying)\b|\bwhat is the point (?:anymore|of anything|of trying)\b",
          WEAK),
    phrase(SUICIDE, "better_off_without_me", r"\b(?:better off|happier|better|easier)(?: place| world)? (?:without (?:me|their (?:mom|"
                                            r"mother|dad|father|parent))|if i (?:was|were|am) (?:not |no longer )?"
                                            r"(?:gone|dead|here|around|alive)|if i died|if i disappeared|with me gone|"
                                            r"with me dead|when i am gone|when i am dead|not existing|not being alive|not being here|not living)\b"),
    phrase(SUICIDE, "no_one_would_care",
          r"\b(?:no one|nobody|would anyone|would anybody|does anyone|who) (?:would |will |even |really )*(?:care|"
          r"notice|miss me|cry|come to my funeral|realize)\b.{0,30}?\bif i (?:died|was gone|were gone|was dead|"
          r"were dead|disappeared|killed myself|was not here|were not here|was not around|ended it|die|left forever)\b|"
          r"\bif i (?:died|was gone|were gone|was dead|were dead|disappeared|killed myself|was not here|were not here|"
          r"was not around|die|left forever)\b.{0,30}?\b(?:no one|nobody|would anyone|anyone) (?:would |will |even )*"
          r"(?:care|notice|miss me|cry)\b|\b(?:no one|nobody) (?:will|would|is going to) (?:even )?miss me\b|"
          r"\bmiss me when i am (?:gone|dead)\b"),
    phrase(SUICIDE, "suicidal", r"\bsuicidal\b"),
    phrase(SUICIDE, "suicide_thoughts",
          r"\b(?:think|thinking|thought|thoughts|considering|consider|contemplating|contemplate|planning|plan|plans|"
          r"urges?|obsessed|obsessing|researching|googling|searching|fantasi[sz]ing|daydreaming) (?:about |of |on "
          r"|with )?(?:suicide|killing myself|ending my life|ending it all|taking my (?:own )?life|hanging myself|"
          r"overdosing)\b"),
    # One's own dying and funeral; death in general is often grief, so weak.
    phrase(SUICIDE, "own_death_thoughts", r"\b(?:thinking|thoughts|think|obsessed|obsessing|fantasi[sz]ing|dreaming|"
                                         r"imagine|imagining|picture|picturing|planning) (?:about |of )?(?:dying|being dead|"
                                         r"my (?:own )?death|my (?:own )?funeral)\b(?! (?:my|her|his|their) hair)"),
    phrase(SUICIDE, "death_thoughts", r"\b(?:thinking|thoughts|obsessed|obsessing|fantasi[sz]ing|dreaming) (?:about |of "
                                     r")?death\b", WEAK),
    phrase(SUICIDE, "my_suicide", r"\bmy (?:own )?suicide\b"),
    phrase(SUICIDE, "commit_suicide",
          r"\bi (?:(?:am|will|would|might|may|could|should|want|to|going|thinking|of|about|plan|planning|tried|try|"
          r"have|think|just|really|almost|nearly|seriously|decided|ready) )*(?:commit|committing|attempt|attempted|"
          r"attempting|try|tried) suicide\b"),
    phrase(SUICIDE, "suicide_note", r"\b(?:suicide|goodbye) (?:note|letter)s?\b",
          unless=r"\b(?:his|her|their|found|read|reading)\b"),
    phrase(SUICIDE, "suicide_only_way",
          r"\b(?:suicide|death|dying|killing myself|ending it(?: all)?) (?:is|seems|feels|looks) (?:like )?(?:the |my )?"
          r"(?:only|best|easiest|last) (?:way|option|answer|choice|solution|way out|escape)\b|\bsuicide\b.{0,25}"
          r"\b(?:on my mind|in my head|crossing my mind)\b|\bno way out (?:except|but|other than) (?:death|dying|"
          r"suicide)\b"),
    phrase(SUICIDE, "only_way_out", r"\b(?:only|easy|easiest) way out\b", WEAK),
    # Asking for a crisis line is itself a signal; volunteering at one is not.
    phrase(SUICIDE, "crisis_line", r"\b(?:suicide|crisis) (?:hot ?line|help ?line|lifeline|text line|line)\b",
          unless=r"\b(?:volunteer|volunteering|volunteered|work at|works at|worked at|job)\b"),
    phrase(SUICIDE, "method_search",
          r"\bhow (?:to|do i|can i|do you|does one|do people) (?:die|kill myself|kill yourself|end my life|overdose|"
          r"hang myself|commit suicide)\b|\bways to (?:die|kill myself|end my life|commit suicide)\b|"
          r"\bhow (?:many|much) (?:\w+ )?{_DRUGS} (?:it takes|does it take|would it take|to take)\b".replace("{_DRUGS}", _DRUGS)
          + r"|\bstaring at (?:the|my|a) (?:bottle of )?(?:pills|rope|noose|gun|blade|razor)\b|"
          r"\b(?:painless|easiest|quickest|fastest|best|easy|quick|surest|least painful) (?:way|ways|method|methods) "
          r"to (?:die|kill myself|end it|end my life|commit suicide|overdose)\b|\b(?:painless|least painful) (?:way|ways) "
          r"to go\b|"
          r"\bhow (?:many|much)\b.{0,40}\b(?:to die|to overdose|to od|to kill (?:myself|me|a person)|lethal|fatal)\b|"
          r"\b(?:tie|tied|tying|make|made|bought|buy|have|got) (?:a |the )?noose\b"),
    phrase(SUICIDE, "method_intent",
          rf"\b{_INTENT} (?:just |finally )?(?:jump off|jump from|jump in front of|step in front of|walk into traffic|"
          r"throw myself (?:off|in front of|under)|overdose|od|swallow (?:all|every|everything|a bunch|the whole)|"
          rf"take (?:all|every one) of (?:my|the|these) {_DRUGS}|drive (?:my car )?(?:off|into) "
          r"(?:a |the )?(?:tree|wall|river|lake|bridge|cliff|pole|truck|oncoming traffic|traffic|ocean|sea)|"
          r"pull the trigger|drown myself|walk into (?:the )?(?:ocean|sea|lake|river|traffic)|drink (?:some )?(?:bleach|antifreeze|poison|drain cleaner))\b"),
    phrase(SUICIDE, "method_named",
          r"\b(?:use|turn|point|pointing|put|hold|holding) (?:it|the gun|a gun|the knife|a knife|the blade) (?:on|to|"
          r"against|at) (?:myself|my (?:head|throat|wrists?|chest))\b|\bgun to my head\b|\bslit my (?:wrists?|throat)\b|"
          r"\bblow my (?:brains|head) out\b|\b(?:use|using|turn|turning) (?:it|them|that|this|the \w+|a \w+) (?:on|"
          r"against) myself\b",
          unless=r"\b(?:lotion|cream|shampoo|product|technique|trick|advice|mask|spray|brush|makeup|method)\b"),
    # Taking a whole supply at once is an overdose whatever the verb.
    phrase(SUICIDE, "take_all_pills", rf"\b(?:take|taking|swallow|swallowing) (?:all|every one|the whole bottle|a whole "
                                     rf"bottle) (?:of )?(?:my |the |these |those )?{_DRUGS}\b"),
    # Each of these alone has an everyday reading; two together do not.
    phrase(SUICIDE, "pills_ready", rf"\b{_DRUGS} (?:in my hand|ready|lined up|in front of me)\b|\b(?:saved|saving|"
                                  rf"stockpiling|hoarding) (?:up )?(?:enough |all my |the )?{_DRUGS}\b", WEAK),
    phrase(SUICIDE, "take_them_all", r"\btake them all\b", WEAK),
    phrase(SUICIDE, "rope", r"\b(?:got|have|bought|tied|tie|tying) (?:a |the )?(?:rope|noose)\b(?! (?:ladder|swing|course))",
          WEAK),
    phrase(SUICIDE, "do_it", r"\b(?:going to|will|ready to|about to) (?:finally |really )?(?:do it|go through with it)\b",
          WEAK),
    phrase(SUICIDE, "nothing_left", r"\bnothing left (?:for me|in my life|to lose)\b", WEAK),
    phrase(SUICIDE, "giving_away", r"\b(?:gave|giving|give) away (?:all )?(?:of )?my (?:stuff|things|belongings|"
                                  r"possessions|pets?|clothes)\b", WEAK),
    phrase(SUICIDE, "affairs_in_order", r"\b(?:wrote|writing|made|making) (?:my|a) will\b|\bput(?:ting)? my affairs in "
                                       r"order\b", WEAK),
    phrase(SUICIDE, "crash_car", r"\b(?:crash|crashing|wreck|wrecking|drive|driving) (?:my|the) car (?:into|off|on "
                                r"purpose)\b|\bcrash(?:ing)? my car\b", WEAK),
    phrase(SUICIDE, "enough_pills", rf"\benough (?:\w+ )?{_DRUGS}\b", WEAK),
    phrase(SUICIDE, "to_end_it", r"\bto end it(?: all)?\b(?! with| between| off)", WEAK),
    phrase(SUICIDE, "before_i_do_it", r"\bbefore i (?:do it|go through with it)\b", WEAK),
    # "if i was dead" and "better off" are common alone; together they are the thought.
    phrase(SUICIDE, "if_i_was_dead", r"\bif i (?:just |simply )?(?:was|were|am) (?:dead|gone|not (?:around|here|alive))\b|"
                                    r"\bif i died\b|"
                                    r"\bwhen i am dead\b", WEAK),
    phrase(SUICIDE, "better_off", r"\b(?:better off|happier|be better|be easier|be fine|be relieved)\b", WEAK),
    phrase(SUICIDE, "on_the_edge", r"\b(?:standing|sitting|am|i am) on (?:the |a )?(?:roof|ledge|edge|bridge|railing)\b",
          WEAK),
    phrase(SUICIDE, "going_to_jump", r"\b(?:going to|about to|want to|ready to) jump\b(?! (?:in|into|rope|on|up|at|"
                                    r"ship|start|to|the gun|around|out))", WEAK),
    phrase(SUICIDE, "not_here_tomorrow", r"\bwill not be (?:here|around|alive) (?:tomorrow|much longer|anymore|for "
                                        r"long|by (?:tomorrow|morning|the morning)|next (?:week|year))\b", WEAK),
    phrase(SUICIDE, "goodbye", r"\bthis is (?:my )?(?:final |last )?"
                              r"goodbye\b|\bgoodbye (?:forever|world|cruel world)\b|\bsaid (?:my )?goodbyes\b|\bsay goodbye (?:to (?:everyone|my "
                              r"family|you all|the world|my \w+ )?)?before i\b|\bmy last (?:message|text|words|"
                              r"night alive|day alive|day on earth)\b", WEAK),
    phrase(SUICIDE, "cannot_go_on", r"\bcan not (?:go on|keep going|do this|take (?:it|this|any more|anymore)|handle "
                                   r"(?:it|this|life)|cope|bear it|live like this|keep doing this)(?: anymore| any "
                                   r"longer| much longer)?\b(?! (?:the|a|with|to|at|vacation|holiday|trips?|dates?))",
          WEAK),
    phrase(SUICIDE, "cannot_keep_living", r"\bcan not (?:keep living|go on living|continue living)\b"),
    phrase(SUICIDE, "want_it_over", r"\b(?:want|need|wish|hope) (?:for )?(?:it all|everything|all of (?:it|this)|my "
                                   r"life|life) (?:all )?to (?:end|be over|stop)\b"),
    phrase(SUICIDE, "want_pain_over", r"\b(?:want|need|wish|hope) (?:for )?(?:it|this|the pain|this pain|the "
                                     r"suffering) (?:all )?to (?:end|be over|stop|go away)(?: forever| for good)?\b|"
                                     r"\bwant to end it\b(?! with)", WEAK),
    phrase(SUICIDE, "disappear_forever", r"\b(?:want|wish|need) (?:to )?(?:just )?disappear (?:forever|for good|"
                                        r"permanently|from (?:this|the) (?:world|earth))\b"),
    phrase(SUICIDE, "want_to_disappear", r"\b(?:want|wish i could|need) (?:to )?(?:just )?disappear\b|\bi (?:just )?"
                                        r"want out\b(?! of)", WEAK),
    phrase(SUICIDE, "hate_being_alive", r"\bhate (?:being alive|existing|my existence)\b"),
    phrase(SUICIDE, "hate_my_life", r"\bhate (?:my life|myself|living)\b(?! (?:in|with|near|here|there|at|so))", WEAK),
    phrase(SUICIDE, "life_pointless", r"\b(?:my )?life is (?:so |just )?(?:pointless|meaningless|worthless|hopeless|over|"
                                     r"too hard|unbearable|not worth it|a mess|hell)\b", WEAK),
    phrase(SUICIDE, "hopeless", r"\bi (?:am|feel)(?: so| completely| totally| utterly| really| just)* (?:hopeless|"
                               r"worthless|empty inside|numb inside|dead inside|like a burden|a burden)\b|"
                               r"\bburden (?:to|on) (?:everyone|everybody|my family|my friends|you all)\b", WEAK),
    phrase(SUICIDE, "give_up_on_life", r"\bgiv(?:e|ing) up on (?:life|living|myself)\b", WEAK),
    # Someone else's present risk: the reply speaks to "you or someone near you". Past deaths are grief.
    phrase(SUICIDE, "other_wants_to_die",
          rf"\b(?:want|wants|wanted|going|planning|threatening|threatened|threatens|trying|tried|about|will|would) to "
          rf"(?:kill|hurt|harm|end|off|unalive|take) {_OTHER_SELF}\b"),

    # --- self-harm -----------------------------------------------------------------------------------------
    phrase(SELF_HARM, "hurt_myself", rf"\b(?:{_SELF_HARM_VERB}) (?:myself|my {_BODY})\b", unless=_ACCIDENT),
    phrase(SELF_HARM, "hurt_my_hands", rf"\b(?:{_SELF_HARM_VERB}) my (?:hands?|fingers?|face|head|neck|chest|feet)\b",
          WEAK, unless=_ACCIDENT),
    phrase(SELF_HARM, "self_harm", r"\bself (?:harm|harming|harmed|harms|injury|injuring|injure|mutilation|"
                                  r"mutilating)\b"),
    # Cutting without an object ("i keep cutting", "the urge to cut is strong"); cutting vegetables has one.
    phrase(SELF_HARM, "cutting", rf"\b(?:started|start|starting|keep|kept|been|am|i|relapsed and|urge to|urges to|want "
                                rf"to|need to|going to|back to|began|begin) (?:cutting|cut)(?= again| myself| my {_BODY}|"
                                r"$| to (?:cope|feel|numb|forget)| when| because| every| tonight| today| on purpose| is| so| "
                                r"deeper| and i)", unless=_ACCIDENT),
    phrase(SELF_HARM, "into_my_skin", rf"\b(?:carve|carving|carved|cut|cutting|scratch|scratched|scratching|burn|burned|"
                                     rf"burning|burnt|etch|etched)\b(?: \w+){{0,3}} (?:into|in|on) my (?:\w+ )?{_BODY}\b",
          unless=_ACCIDENT),
    phrase(SELF_HARM, "fresh_cuts", rf"\b(?:fresh |new |deep )?(?:cuts|scars|burns) (?:on|all over) (?:my|her|his|their) "
                                   rf"(?:\w+ )?{_BODY}\b",
          unless=r"\b(?:from (?:the |a |my )?(?:rose|bush|bushes|thorns|cat|dog|glass|fall|accident|surgery|kitten)|"
                 r"surgery|accident|cat|kitten|garden)\b"),
    phrase(SELF_HARM, "relapsed", r"\brelapsed\b", WEAK),
    phrase(SELF_HARM, "bleed", r"\b(?:want|need|like|make myself|watch myself) (?:to )?bleed\b|\b(?:until|till|til) "
                              r"(?:i|it|they|my \w+|the skin) (?:bleed|bleeds|bled|bleeding)\b",
          unless=r"\b(?:mosquito|itch|itchy|rash|eczema|lips|gums|nose)\b"),
    phrase(SELF_HARM, "hide_cuts", r"\b(?:hide|hiding|cover|covering) (?:up )?(?:the |my )?(?:cuts|scars|burns|wounds)\b",
          unless=r"\b(?:surgery|accident|acne|operation|section|tattoo|chicken pox|burn unit)\b"),
    phrase(SELF_HARM, "starving_myself", r"\b(?:starving|starve|starved) myself\b", WEAK),
    phrase(SELF_HARM, "purging", r"\bmak(?:e|ing) myself (?:throw up|vomit|puke|purge)\b|\bpurging\b", WEAK),
    phrase(SELF_HARM, "punch_myself", r"\b(?:punch|punching|punched|hit|hitting|slap|slapping|slapped|choke|choking|"
                                     r"strangle|strangling|bite|biting|bit) myself\b",
          unless=_ACCIDENT + r"|\bfor (?:being|forgetting|not|missing|doing|saying)\b|\bcould (?:slap|hit|punch) myself\b"),
    phrase(SELF_HARM, "hit_myself", r"\b(?:hit|hitting|bang|banging|slam|slamming) my head (?:on|against|into)\b|\bpunch"
                                   r"(?:ing)? walls?\b", WEAK),
    phrase(SELF_HARM, "on_purpose", r"\b(?:on purpose|deliberately|intentionally)\b", WEAK),
    phrase(SELF_HARM, "helps_me", r"\b(?:cutting|self harm|self harming|hurting myself|burning myself|the pain) (?:is|was) "
                                 r"(?:the only thing|what|all) (?:that )?(?:helps|works|makes me feel|calms|keeps)\b|"
                                 r"\bcutting (?:helps|calms|makes me feel)\b"),
    phrase(SELF_HARM, "blade_on_skin", rf"\b(?:razor|razors|blade|blades|lighter|scissors|knife|compass) (?:on|to|across|"
                                      rf"into) my (?:\w+ )?{_BODY}\b",
          unless=_ACCIDENT),
    phrase(SELF_HARM, "other_self_harm", r"\b(?:is|are|has been|have been|keeps|keep|started|been) (?:cutting|hurting|"
                                        r"harming|burning|starving|self harming) (?:himself|herself|themselves|"
                                        r"themself)\b|\b(?:cut|slit|slashed) (?:his|her|their) (?:wrists?|throat)\b"),

    # --- abuse (disclosures stay a crisis when told in the past) -------------------------------------------
    phrase(ABUSE, "hits_me", rf"\b{_ABUSER} (?:\w+ )?(?:hits|beats|kicks|punches|slaps|chokes|strangles|abuses|rapes|"
                            r"molests|whips|smacks|burns|shoves|attacks|assaults|threatens) (?:me|us|my (?:\w+ )?(?:mom|mother|"
                            r"mum|dad|father|sister|brother|kids|children|baby)(?: and me)?)\b",
          unless=_NOT_VIOLENT),
    phrase(ABUSE, "hurts_me", rf"\b{_ABUSER} (?:\w+ )?hurts me\b", WEAK),
    phrase(ABUSE, "hurts_me_when", rf"\b{_ABUSER} (?:\w+ )?(?:hurts|hits|beats|slaps|chokes|kicks|punches) me when "
                                  r"(?:he|she|they) (?:is|are|gets|get) (?:angry|drunk|mad|upset|high|jealous)\b"),
    # Told in the past by a named person: severe acts count; play and sport are the usual other reading.
    phrase(ABUSE, "hit_me_past", rf"\b{_ABUSER} (?:\w+ )?(?:choked|strangled|beat|punched|kicked|slapped|hit|pushed|"
                                r"shoved|burned|whipped|attacked|hurt) me\b", unless=_NOT_VIOLENT,
          past_ok=True),
    phrase(ABUSE, "keeps_hitting_me", r"\b(?:keeps|keep|kept|been|is|are|was|were|started|starts|always) (?:hitting|"
                                     r"beating|kicking|punching|slapping|choking|strangling|abusing|raping|molesting|"
                                     r"hurting|threatening|assaulting|attacking) me\b",
          unless=_NOT_VIOLENT, past_ok=True),
    phrase(ABUSE, "hit_me_again", r"\b(?:hit|beat|kicked|punched|slapped|choked|strangled|shoved|smacked|whipped) me "
                                 r"(?:\w+ ){0,3}?(?:again|every|whenever|so hard|until|black and blue)\b|\bbeat me up\b",
          unless=_NOT_VIOLENT, past_ok=True),
    phrase(ABUSE, "hit_me", r"\b(?:hit|beat|kicked|punched|slapped|choked|strangled|shoved|smacked|whipped) me\b", WEAK,
          unless=_NOT_VIOLENT),
    phrase(ABUSE, "touches_me", r"\b(?:touches|touching|touched|grabs|grabbing|grabbed|gropes|groping|groped) me\b.{0,40}"
                               r"\b(?:inappropriately|private|privates|there|without (?:my )?(?:consent|permission)|"
                               r"against my will|do not want|did not want|at night|under my|when no one|when nobody|"
                               r"in my bed|sexually|when (?:she|he|they|my \w+|mom|dad) (?:is|are) not (?:home|around|there)|when we are "
                               r"alone)\b|\b(?:at night|into my (?:room|bed)|when no one|when nobody)\b.{0,40}"
                               r"\b(?:touches|touched|touching|gropes|groped) me\b", past_ok=True),
    phrase(ABUSE, "touches_me_weak", r"\b(?:touches|keeps touching) me\b", WEAK),
    phrase(ABUSE, "sexual_violence", r"\b(?:raped|molested|groped|sexually (?:assaulted|abused|harassed)|assaulted|"
                                    r"abused|trafficked|drugged) me\b|\bi (?:was|got|have been|am being|am|were|had "
                                    r"been|get) (?:\w+ )?(?:\w+ and )?(?:raped|molested|groped|sexually (?:assaulted|abused|harassed)|"
                                    r"assaulted|abused|trafficked|drugged|beaten up|beat up)\b|"
                                    r"\bforced (?:himself|herself|themselves) on me\b|\b(?:victim|survivor) "
                                    r"of (?:rape|sexual assault|abuse|domestic (?:violence|abuse)|incest|trafficking)\b",
          past_ok=True),
    phrase(ABUSE, "abusive", r"\b(?:in an?|my|leave (?:my|an?)) abusive (?:relationship|marriage|home|household|family|"
                            r"husband|wife|boyfriend|girlfriend|partner|parents?|dad|mom|father|mother|ex)\b|"
                            rf"\b{_ABUSER} (?:is|are|gets|get|becomes|can be) (?:very |so |really )?(?:abusive|violent)\b"),
    phrase(ABUSE, "threatens_me", r"\bthreat(?:en|ens|ened|ening) to (?:kill|hurt|hit|beat|rape|shoot|stab|burn|take "
                                 r"(?:my|the) (?:kids|children|baby)) (?:me|us|my)\b|\b(?:said|says|told me) (?:he|she|"
                                 r"they) (?:would|will|is going to|was going to) (?:kill|hurt|hit|beat|rape) me\b|"
                                 r"\b(?:will|would|is going to|going to) (?:kill|hurt|hit|beat|rape) me if i (?:leave|"
                                 r"left|tell|told|call|called|go|try to leave|report|say|said|speak|talk)\b",
          past_ok=True),
    phrase(ABUSE, "afraid_of_harm", rf"\b(?:afraid|scared|terrified|frightened|worried) (?:that )?{_ABUSER} (?:will|is "
                                   r"going to|might|would|could) (?:\w+ ){0,4}?(?:kill|hurt|hit|beat|rape|attack|find) "
                                   r"(?:me|us)\b"),
    phrase(ABUSE, "threatening_me", r"\bthreaten(?:s|ed|ing) (?:me|us|my life)\b",
          unless=r"\bwith (?:a )?(?:detention|grounding|chores|a fine|legal|a lawsuit|lawyers?|time out|no)\b"),
    phrase(ABUSE, "pushes_me_around", r"\b(?:pushes|pushed|pushing|shoves|shoving|throws|throwing) me (?:around|against|"
                                     r"into|down)\b", WEAK),
    phrase(ABUSE, "calls_me_names", r"\bcalls? me (?:worthless|stupid|useless|fat|ugly|names|a whore|a slut|a bitch|"
                                   r"pathetic|nothing)\b", WEAK),
    phrase(ABUSE, "shows_up", rf"\b{_ABUSER} (?:\w+ )?(?:keeps|kept|has been) (?:showing up|turning up|waiting) (?:at|"
                             r"outside) my\b", WEAK),
    phrase(ABUSE, "will_hurt_me", rf"\b{_ABUSER} (?:will|is going to|would) (?:hurt|hit|beat|rape) me\b", WEAK),
    phrase(ABUSE, "scared_of_home", r"\b(?:scared|afraid|terrified) (?:to go|of going) home\b|\b(?:scared|afraid|"
                                   r"terrified|frightened) of (?:him|her|them|my (?:dad|father|mom|mother|stepdad|"
                                   r"stepfather|stepmom|husband|wife|boyfriend|girlfriend|partner|ex|uncle|brother|"
                                   r"parents))\b", WEAK),
    phrase(ABUSE, "controlled", r"\b(?:will not|does not|would not|never) let me (?:leave (?:the house|home|the room|him|"
                               r"her)|eat (?:anything|for)|see (?:anyone|my family)|talk to anyone|call anyone)\b|"
                               r"\block(?:s|ed)? me (?:in|inside) (?:my|the|a) (?:room|closet|basement|house|bathroom|"
                               r"car|cellar|shed)\b"),
    phrase(ABUSE, "isolated", r"\b(?:will not|does not|would not|never) let me (?:see|talk to|call|go out with) (?:my )?"
                             r"(?:friends|family|anyone)\b", WEAK),
    phrase(ABUSE, "monitored", r"\b(?:checks|tracks|reads|goes through) my (?:phone|messages|location)\b|\bcontrols "
                              r"(?:all )?my (?:money|phone|life)\b|\btakes? my (?:phone|money|keys) (?:away )?so i can "
                              r"not\b", WEAK),
    phrase(ABUSE, "forced", r"\bforc(?:es|ed|ing|e) me to (?:have sex|do things|touch|watch|sleep with|kiss|perform)\b|"
                           r"\b(?:makes|made|making|forces|forced|forcing) me (?:to )?(?:do |have |watch |perform )?"
                           r"(?:sexual|sex) (?:things|stuff|acts)\b",
          past_ok=True),
    phrase(ABUSE, "domestic_violence", r"\bdomestic (?:violence|abuse)\b", WEAK),

    # --- immediate danger ----------------------------------------------------------------------------------
    phrase(DANGER, "break_in", rf"\b{_PERSON} (?:is|are) (?:trying to |about to )?(?:break|breaking) (?:in|into|down)\b|"
                              r"\b(?:is|are|keeps|keep) (?:trying|tries) to (?:get|break|force (?:his|her|their|the) way) (?:in|inside)\b"
                              r"(?! (?:touch|shape|trouble|line|the (?:car|game|habit)))|\b(?:is|are) (?:trying to )?"
                              r"(?:break|breaking|kick|kicking|bang|banging|pound|pounding) (?:down )?(?:on )?(?:the|my|"
                              r"our) (?:door|window)s?(?: down| in| open)?\b"),
    phrase(DANGER, "intruder", r"\b(?:there is|there are) (?:someone|somebody|a man|a guy|a woman|a stranger|an intruder|"
                              r"people|a person|men|strangers) (?:in|inside) (?:my|the|our) (?:house|home|room|apartment|"
                              r"flat|bedroom|building|backyard|yard|garden|garage)\b|\b(?:there is|there are) (?:someone|somebody|a man|a guy|a "
                              r"stranger|an intruder|people|men) outside (?:my|our) (?:window|bedroom|room)\b"),
    phrase(DANGER, "just_broke_in", r"\b(?:just|is|are|has|have) (?:broken|broke|breaking) in(?:to)?\b|\b(?:broke|"
                                   r"broken) in(?:to)?\b.{0,40}\b(?:right now|is (?:still )?(?:here|inside|downstairs|"
                                   r"upstairs|in the house))\b"),
    phrase(DANGER, "attacked", r"\bi (?:was|got|have been|am being|just got) (?:\w+ )?(?:jumped|mugged|stabbed|shot|"
                              r"kidnapped|abducted|taken hostage)\b|\b(?:is|are) (?:dragging|pulling|forcing) me (?:into|"
                              r"in|to|out)\b",
          unless=r"\b(?:paintball|airsoft|laser tag|nerf|by a (?:dog|bird|goose|bee|wasp|swarm|cat))\b"),
    phrase(DANGER, "unconscious", r"\b(?:is|are) (?:unconscious|unresponsive|not responding|passed out and)\b|\b(?:is|"
                                 r"are) not (?:breathing|responding|responsive)\b"),
    phrase(DANGER, "drank_and_pills", r"\bdrank (?:a|an entire|a whole|the whole) bottle of\b", WEAK),
    phrase(DANGER, "took_pills", rf"\btook (?:some |my |the |a few )?(?:\w+ )?{_DRUGS}\b|\boverdosed\b", WEAK),
    phrase(DANGER, "trapped", r"\bi am (?:stuck|trapped) (?:in|inside|under)\b|\bi am trapped\b", WEAK),
    phrase(DANGER, "fire", r"\b(?:there is a|is on) fire\b", WEAK),
    phrase(DANGER, "drugged", r"\bdrugged (?:me|my (?:drink|food|coffee))\b|\b(?:spiked|put something in) my drink\b|"
                             r"\bi (?:think i )?(?:was|got|have been) drugged\b"),
    phrase(DANGER, "intruder_inside", r"\b(?:someone|somebody|a man|a guy|a stranger|an intruder|strangers) (?:is|are) "
                                     r"(?:in|inside) (?:my|the|our) (?:house|home|room|apartment|flat|bedroom)\b"),
    phrase(DANGER, "hiding", r"\bi am hiding (?:in|under|from)\b|\bhiding (?:from (?:him|her|them|my \w+)|in (?:the|my) "
                            r"(?:closet|bathroom|wardrobe|basement|attic))\b", WEAK),
    phrase(DANGER, "rage", rf"\b{_ABUSER} (?:is|are) (?:drunk|high|yelling|screaming|raging|violent|out of control|throwing "
                          r"things|smashing things)\b", WEAK),
    phrase(DANGER, "at_my_door", rf"\b{_PERSON} (?:is|are) (?:outside|at|banging on|in front of) (?:my|our|the) "
                                r"(?:door|window|house|room|apartment|home)\b", WEAK),
    phrase(DANGER, "followed", rf"\b{_PERSON} (?:is|are|keeps|has been|have been|been) (?:following|stalking|chasing) "
                              r"me\b",
          unless=r"\b(?:on|around) (?:instagram|twitter|tiktok|ig|insta|facebook|youtube|social media|snapchat)\b|"
                 r"\b(?:puppy|dog|cat|kitten|kid|baby|toddler)\b|\bfollowing me (?:back|around)\b"),
    phrase(DANGER, "not_safe", r"\bi am (?:in (?:danger|immediate danger)|not safe|unsafe|being (?:followed|chased|"
                              r"attacked|held|kidnapped|hunted|stalked|threatened))\b(?! (?:of|to|zone))|"
                              r"\b(?:do not|no longer|never) feel safe (?:at home|here|in my (?:own )?(?:home|house|"
                              r"room)|with (?:him|her|them|my \w+)|around (?:him|her|them|my \w+)|anymore)\b"),
    phrase(DANGER, "weapon", rf"\b{_PERSON} (?:has|have|is holding|is pointing|pulled|is waving|got) (?:a |an |his |her )?"
                            r"(?:gun|knife|weapon|rifle|pistol|machete)\b|\b(?:with|has|is holding|grabbed|is waving|pulled out) (?:a|an|"
                            r"his|her) (?:gun|knife|weapon|rifle|pistol|machete)\b", WEAK),
    phrase(DANGER, "armed_stranger", r"\b(?:there is|there are) (?:someone|somebody|a man|a guy|a woman|a stranger|people|"
                                    r"men) (?:with|holding|pointing) (?:a |an )?(?:gun|knife|weapon|rifle|pistol|machete)\b"),
    phrase(DANGER, "armed_threat", rf"\b(?:{_PERSON}) (?:is |are )?(?:going to|trying to|about to|wants to|coming to|"
                                  r"will) (?:shoot|stab|rape|murder|attack|strangle|choke|beat|kidnap) (?:me|us)\b",
          unless=_FIGURATIVE_THREAT),
    # "my wife is going to kill me when she sees the bill" is the usual meaning; the cues say so.
    phrase(DANGER, "kill_threat", rf"\b(?:{_PERSON}) (?:is |are )?(?:going to|trying to|about to|wants to|coming to|"
                                 r"will) (?:kill|hurt) (?:me|us)\b", unless=_FIGURATIVE_THREAT),
    phrase(DANGER, "pills_taken", r"\b(?:took|swallowed|downed|ate|chugged|overdosed on) (?:too many|a lot of|all (?:of )?"
                                 r"(?:my|the|his|her)|a bunch of|the whole (?:bottle|pack|box)(?: of)?|an entire (?:bottle|"
                                 r"pack|box)(?: of)?|a handful of|a whole (?:bottle|pack|box)(?: of)?|[1-9]\d+) (?:\w+ )?"
                                 rf"{_DRUGS}\b"),
    phrase(DANGER, "overdosing", r"\b(?:am|is|are) (?:\w+ )?overdosing\b|\bi (?:just |have |think i |might have |may "
                                r"have )?(?:overdosed|od)\b|\b(?:am|is|are|think i am|think he is|think she is) having an "
                                r"overdose\b"),
    phrase(DANGER, "bleeding", r"\b(?:i am|am|is|are|keeps|keep) bleeding (?:a lot|badly|heavily|so much|everywhere|out|"
                              r"to death)\b|\b(?:will not|can not|does not) stop bleeding\b|\bbleeding and it (?:will "
                              r"not|does not|can not) stop\b"),
    phrase(DANGER, "not_breathing", r"\b(?:is not|are not|stopped|has stopped) breathing\b"),
    phrase(DANGER, "will_not_wake", r"\b(?:will not|can not|does not) wake up\b(?! (?:for|in|early|on time|until|before|"
                                   r"when|at))", WEAK),
    phrase(DANGER, "harm_others",
          r"\bi (?:am going to|want to|will|am about to|am planning to|plan to|feel like|have the urge to|need to|am "
          r"thinking about|keep thinking about) (?:kill|killing|hurt|hurting|shoot|shooting|stab|stabbing|murder|"
          r"murdering|poison|poisoning|strangle|strangling) (?:someone|somebody|people|everyone|everybody|them all|him|"
          r"her|them|my \w+)\b",
          unless=r"\b(?:if|when|unless) (?:he|she|they|you|it|my \w+)\b|\bfor (?:eating|taking|being|doing|not|using|"
                 r"that|this|what)\b|\b(?:lol|haha|lmao|jk)\b|\bmy (?:\w+ )?(?:cat|dog|puppy|kitten|phone|computer|"
                 r"laptop|plants?|car|alarm|tv)\b"),
    phrase(DANGER, "mass_violence", r"\bshoot up (?:the|my|a|our) (?:school|office|work|church|mall|class|campus|party|"
                                   r"workplace)\b|\b(?:bring|bringing|take|taking) (?:a |my |the )?(?:gun|rifle|bomb|"
                                   r"weapon) to (?:school|work|class|church|campus)\b|\b(?:plant|planting|build|"
                                   r"building|make|making) a bomb\b"),
    phrase(DANGER, "help_now", r"\b(?:please help(?: me)?|help me please|call (?:911|999|112|the police|the cops|an "
                              r"ambulance) (?:please|now|right now))\b", WEAK),
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
    """Whether `text` (the user's newest message) is a crisis; `history` is the conversation before it."""
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
            found = assess(turn)
            if found.is_crisis:
                return found.category
    return SUICIDE
