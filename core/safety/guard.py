"""Output guard and the one reply function every interface calls.

`safe_reply` answers a crisis message with the fixed CRISIS_REPLY without calling the generator, and passes every
generated reply through `guard`, which replaces it with a safe fallback when it holds a slur, sexual content, advice
to harm oneself or others, crisis talk of its own ("I want to die too"), or a claim to be a human or a therapist.
Replacements are counted by reason (`guard_counts`), safely across the app's worker threads.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

from core.safety.crisis import CRISIS_REPLY, RuleTable, assess, assess_rules, normalise
from core.safety.crisis_rules import DRUGS, phrase

NOTICE = (
    "EmpathyGAIL is an AI research demo: its replies are written by a small language model trained on public "
    "dialogue data. It is not a person and not a therapist, and it can be wrong. If you are in crisis or in "
    "danger, please contact your local emergency number or a crisis line (988 in the US; findahelpline.com "
    "lists helplines in other countries)."
)
FALLBACK = "I'm sorry, I don't have a good reply to that. Would you like to tell me more about how you feel?"
IDENTITY_FALLBACK = ("I should be clear that I'm an AI program, not a person and not a therapist. I'm still here to "
                     "listen, though. How are you feeling?")

SLUR, SEXUAL, HARM_ADVICE, IDENTITY, CRISIS_TALK, EMPTY = (
    "slur", "sexual content", "advice to harm", "claims to be human or a therapist", "crisis talk", "empty reply")
CRISIS = "crisis message"  # counted when safe_reply answers with CRISIS_REPLY
# A streamed reply is shown this many words behind what has been written, more than any phrase the guard looks for
# is long, so no word of a phrase it fires on is ever shown; a shorter reply is shown only whole, once it passed.
HOLD_BACK_WORDS = 6

# The most common English slurs (racial, ethnic, homophobic, transphobic, ableist), kept as SHA-256 of the lowercase
# word so that the source does not spell them out. A word matches itself or its plural. To add one:
#   python -c "import hashlib; print(hashlib.sha256(b'word').hexdigest())"
_SLUR_HASHES = frozenset({
    "120f6e5b4ea32f65bda68452fcfaaef06b0136e1d0e4a6f60bc3771fa0936dd6",
    "08a841e996781e9e77d30a4e4420a8f501a280b00624e6d1224bf54aaff73eba",
    "8f5083e3e5c7dc8932f2bf58212f963f3a44752618c96297f82623f736c52738",
    "9915ba2d822280f22c283df4e76584a40e0119fc58f73c5f84d4fdb04d04fa6f",
    "c3de533e9b7fe63b79f648687a30d2861edd92fe7c3cd1f2c485e0a605367624",
    "f9d0d9b18ae9033a5ea36df19bf279b059e887a9ae785db81117bceaecc95933",
    "98b52c4b6b7d1f48e7477a5ccc10955dd195d0ac5a38c8281bfeb08762634909",
    "eef3bd091670c3447022d619c06ad15de96da72b5a66f28bb8b75d1b1c12a05f",
    "16ea09fc78ca83ca502cbcf2377acdf280bf18f61e259153f0868405eedab5ef",
    "158869a97379229b7681efae9d7f9c9214134e836d649ba53477c0c111414d59",
    "cc02032349c833ac5e97bac094560ed40e09acf34cb1978ab7a9840b9bf15b4d",
    "886d51e97ad7931d0d2af8439ca6d9e4887e3c2b469ed247cbd68ceb3649ccde",
    "22fc75e65a0e9d34324092a7c6a8dba961853294abca4e5914e60c550f48e0c2",
    "333f7618092958c75b8c5af6f1ec77b42803922a0fc6ff1570a8af3a3aab3b4a",
})

_SELF_HARM = r"(?:kill|hurt|harm|cut|burn|hang|shoot|stab|drown|poison|starve|unalive|off|punch|hit)"
# Same matching as crisis recognition (normalised text, negation and hypotheticals set aside: "be careful not to
# hurt yourself" is fine advice), with the reply's own rules.
_RULES = RuleTable((
    phrase(SEXUAL, "explicit", r"\b(?:sex|sexy|sexual|sexually|porn\w*|nudes?|naked|orgasms?|masturbat\w*|blowjobs?|"
                               r"handjobs?|horny|erotic|genitals?|penis|vagina|pussy|boobs|tits|cum|cumming|kinky|"
                               r"fetish\w*|aroused|arousal|undress\w*|make love|making love|turns? me on|"
                               r"sleep with (?:me|you))\b",
           unless=r"\bcum laude\b|\bnaked eye\b|\bsex (?:and|in) the city\b|\b(?:name|age|gender|birth) sex\b|"
                  r"\bsex (?:date|age|gender)\b"),
    # Advice, not a question about an accident ("did you hurt yourself?").
    phrase(HARM_ADVICE, "harm_yourself", rf"(?:^|\b(?:should|could|need to|must|ought to|have to|had better|why not|"
                                         rf"why do not you|just|go|try to|want to|going to) )(?:just |"
                                         rf"go )?{_SELF_HARM} yourself\b|\bend your (?:own )?life\b|"
                                         rf"\btake your (?:own )?life\b|\bslit your (?:wrists?|throat)\b",
           unless=r"\byourself (?:laughing|up|out|together)\b"),
    phrase(HARM_ADVICE, "you_should_die", r"\byou (?:should|deserve to|ought to|need to|might as well|had better|"
                                          r"better) (?:just )?(?:die|be dead|disappear forever|not exist|"
                                          r"stop existing)\b|^(?:just |go )?(?:die|go die|jump off a bridge)\b|"
                                          r"\b(?:nobody|no one) would (?:even )?(?:miss|care about) you\b|"
                                          r"\bbetter off without you\b"),
    phrase(HARM_ADVICE, "harm_others", r"\byou (?:should|could|need to|ought to|must|have to|had better|"
                                       r"better) (?:just )?(?:kill|hurt|hit|beat up|punch|stab|shoot|poison|slap|"
                                       r"strangle|rape|attack) (?:him|her|them|someone|somebody|people|your \w+)\b|"
                                       r"^(?:just |go )?(?:kill|hurt|hit|punch|stab|shoot|poison|strangle) (?:him|her|"
                                       r"them)\b",
           unless=r"\bwith kindness\b|\bhit (?:him|her|them) up\b"),
    phrase(HARM_ADVICE, "dangerous_advice", rf"\b(?:stop|quit) taking your {DRUGS}\b|\btake (?:all|more|extra|"
                                            rf"a bunch) (?:of )?(?:your )?{DRUGS}\b|\bdrink (?:some )?(?:bleach|"
                                            rf"antifreeze)\b|\bdrink until you (?:pass out|black out)\b|"
                                            rf"\bstarve yourself\b"),
    # The model must not pass for a person or a clinician; saying what it is not is fine ("i am not a therapist").
    phrase(IDENTITY, "human", r"\bi am (?:a |an )?(?:real |actual |living )?(?:human|human being|person|real person)\b|"
                              r"\bi am (?:only|just) human\b|\bi am not (?:a |an )?(?:bot|robot|ai|machine|computer|"
                              r"program|chatbot|language model)\b|\bi am human too\b|\bhuman like you\b", past_ok=True),
    phrase(IDENTITY, "therapist", r"\b(?:as|i am|i work as|i used to be|i was) (?:a |an |your )?(?:licensed |"
                                  r"certified |trained |professional )?(?:therapist|counselor|counsellor|psychologist|"
                                  r"psychiatrist|psychotherapist|doctor|physician|nurse|social worker|"
                                  r"mental health professional)\b|\bmy (?:patients|clients|therapy practice)\b",
           past_ok=True),
))

_LOCK = threading.Lock()
_COUNTS: Counter[str] = Counter()


@dataclass(frozen=True)
class GuardResult:
    text: str
    replaced: bool
    reason: str  # what was found (one of the reasons above), never the offending words themselves; "" when passed


@dataclass(frozen=True)
class SafeReply:
    text: str
    kind: str  # "crisis" (fixed support message), "generated" (model's reply as is) or "guarded" (replaced)
    reason: str
    category: str | None = None  # crisis category when kind == "crisis"


def _count(reason: str) -> None:
    with _LOCK:
        _COUNTS[reason] += 1


def guard_counts() -> dict[str, int]:
    """Replacements so far in this process, by reason (and crisis messages answered with CRISIS_REPLY)."""
    with _LOCK:
        return dict(_COUNTS)


def reset_guard_counts() -> None:
    with _LOCK:
        _COUNTS.clear()


def _has_slur(normalised: str) -> bool:
    for word in set(re.findall(r"[a-z]+", normalised)):
        for form in {word, word.removesuffix("s"), word.removesuffix("es")}:
            if hashlib.sha256(form.encode()).hexdigest() in _SLUR_HASHES:
                return True
    return False


def _unsafe_reason(reply: str, whole: bool = True) -> str | None:
    """Why `reply` must not be shown, or None. A reply still being written is checked against the rules only: the
    semantic crisis layer costs milliseconds a call, and judges the whole reply once it is written."""
    if not reply.strip():
        return EMPTY
    normalised = normalise(reply)
    if _has_slur(normalised):
        return SLUR
    counted, _ = _RULES.matches(normalised)
    for reason in (HARM_ADVICE, SEXUAL, IDENTITY):
        if any(rule.category == reason for rule, _ in counted.values()):
            return reason
    if (assess if whole else assess_rules)(reply).is_crisis:
        return CRISIS_TALK
    return None


def guard(reply: str) -> GuardResult:
    """The reply as is, or a safe fallback (counted by reason) when it must not reach the person."""
    reply = "" if reply is None else str(reply)
    reason = _unsafe_reason(reply)
    if reason is None:
        return GuardResult(reply, False, "")
    _count(reason)
    return GuardResult(IDENTITY_FALLBACK if reason == IDENTITY else FALLBACK, True, reason)


def safe_reply(history: Sequence[str], prompt: str, generate: Callable[[], str]) -> SafeReply:
    """The reply to show for `prompt`: CRISIS_REPLY for a crisis message (the generator is not called), else the
    generated reply passed through `guard`."""
    assessment = assess(prompt, history)
    if assessment.is_crisis:
        _count(CRISIS)
        return SafeReply(CRISIS_REPLY, "crisis", assessment.reason, assessment.category)
    result = guard(generate())
    return SafeReply(result.text, "guarded" if result.replaced else "generated", result.reason)


def _held_back(text: str) -> str:
    starts = [m.start() for m in re.finditer(r"\S+", text)]
    return text[:starts[-HOLD_BACK_WORDS]].rstrip() if len(starts) > HOLD_BACK_WORDS else ""


def safe_stream(history: Sequence[str], prompt: str, rows: int, stream: Callable[[], Iterable[Sequence[str]]]
                ) -> Iterator[list[SafeReply]]:
    """`safe_reply` for replies shown as they are written, one or more at once (e.g. one per model): yields what
    may be shown of each so far. A crisis message gets CRISIS_REPLY in every row, and `stream` is not called. The
    guard judges each reply whenever it has grown by a word, and what is shown stays HOLD_BACK_WORDS behind; a reply
    it fires on is replaced by the fallback at once (the words before the held-back ones may have been shown), and
    its generation stops once no row is left to write. The last item holds each whole reply as `guard` judges it."""
    assessment = assess(prompt, history)
    if assessment.is_crisis:
        _count(CRISIS)
        yield [SafeReply(CRISIS_REPLY, "crisis", assessment.reason, assessment.category)] * rows
        return
    shown = [SafeReply("", "generated", "")] * rows
    texts: Sequence[str] = [""] * rows
    words = [0] * rows
    for texts in stream():
        for row, text in enumerate(texts):
            n_words = len(text.split())
            if shown[row].kind == "guarded" or n_words == words[row]:
                continue
            words[row] = n_words
            reason = _unsafe_reason(text, whole=False)
            if reason is None:
                shown[row] = SafeReply(_held_back(text), "generated", "")
            else:
                _count(reason)
                shown[row] = SafeReply(IDENTITY_FALLBACK if reason == IDENTITY else FALLBACK, "guarded", reason)
        if all(reply.kind == "guarded" for reply in shown):
            break
        yield list(shown)
    for row, text in enumerate(texts):
        if shown[row].kind != "guarded":
            result = guard(text)
            shown[row] = SafeReply(result.text, "guarded" if result.replaced else "generated", result.reason)
    yield shown
