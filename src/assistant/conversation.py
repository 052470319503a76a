"""Follow-up questions: rewrite "Which countries does it cover?" into a standalone question.

A follow-up's first pronoun is replaced by what it refers to (`resolve`), so every word the
user asked stays. What it refers to comes from a language model choosing a phrase of an
earlier question (`generative.referent_messages`), or, without a model, from the heuristic:
the topic of the previous user turn (the question without its interrogative frame). A
follow-up too short to stand alone gets the topic appended.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from .text import STOPWORDS, stem, tokens
from .types import Message

_PRONOUN = re.compile(r"\b(it|its|this|that|they|them|their|these|those)\b", re.IGNORECASE)
_FRAME = re.compile(
    r"^\s*(?:(?:and|so|ok|okay|now|then)\s*,?\s+)*"
    r"(?:can you |could you |please |would you )?"
    r"(?:tell me (?:more )?about|what about|how about|explain|describe|"
    r"(?:does|do|did|is|are|was|were|can|could|has|have)(?=\s+(?:the|a|an|it|this)\b)|"
    r"(?:what|who|which|where|when|why|how)(?:\s+(?:much|many|long|often))?"
    r"(?:\s+(?:is|are|was|were|does|do|did|has|have|had|can|could|should|will|would))?)\s+",
    re.IGNORECASE,
)
_AUX = (r"(?:is|are|was|were|does|do|did|has|have|had|can|could|will|would|should|may|must"
        r"|shall)")
# "Which country does the project cover?": the noun asked about ("country") and the
# auxiliary after it; the subject ("the project") follows.
_WH_NOUN = re.compile(rf"\b(?P<wh>which|what|how much|how many)\s+"
                      rf"(?:(?!{_AUX}\b)[\w-]+\s+){{0,2}}?(?P<noun>(?!{_AUX}\b)[\w-]+)\s+"
                      rf"(?P<aux>{_AUX})\s+(?=\S)", re.IGNORECASE)
_HAPPENED = re.compile(r"^happened\s+(?:to|at|in|with|during)\s+", re.IGNORECASE)
_PER_DOCS = re.compile(r"^(?:according to|in) the (?:brochure|documents?|text)\s*,?\s*|"
                       r",?\s*(?:according to|in) the (?:brochure|documents?|text)\b",
                       re.IGNORECASE)
_DOCS_SAY = re.compile(r"\b(?:does|do|did)\s+the (?:brochure|documents?|text)\s+"
                       r"(?:say|mention|tell us|write)\s+(?:about\s+)?", re.IGNORECASE)
_SAYS = re.compile(r"^(?:the (?:brochure|documents?|text)\s+|it\s+|they\s+)?"
                   r"(?:say|says|said|mention|mentions|tell us|write)\s+(?:about\s+)?",
                   re.IGNORECASE)
_TAIL = re.compile(r"\s+(?:do|does|mean|means|say|about|for)\s*$", re.IGNORECASE)


def about_what(question: str) -> str:
    """The question without the words that point at the documents themselves ("What does
    the brochure say about ports?" -> "What is ports?"): a follow-up never means those."""
    return _PER_DOCS.sub("", _DOCS_SAY.sub("is ", question)).strip()


def topic_of(question: str) -> str:
    """"What does the NIS Directive do?" -> "the NIS Directive"."""
    q = _PER_DOCS.sub("", question.strip().rstrip("?.! "))
    wh_noun = _WH_NOUN.match(q)
    if wh_noun:
        q = q[wh_noun.end():]
        if wh_noun["aux"].lower() in {"do", "does", "did"} and len(q.split()) > 1:
            q = q.rsplit(None, 1)[0]  # "does the project cover": the verb ends it
    else:
        q = _FRAME.sub("", q, count=1)
    q = _HAPPENED.sub("", q, count=1)
    q = _SAYS.sub("", q, count=1)
    q = _TAIL.sub("", q)
    return q.strip(" ,")


_SWITCH = re.compile(r"^\s*(?:and|what about|how about)\s+(.+?)\s*[?.!]*\s*$", re.IGNORECASE)


def _is_name(word: str) -> bool:
    """A capital anywhere: "Maersk", "ENISA", "iPROCEEDS"."""
    return any(c.isupper() for c in word)


def _names_something(question: str) -> bool:
    """True when the question mentions a name or acronym (a capitalised word after the first)."""
    return any(_is_name(w) for w in question.split()[1:])


def needs_context(question: str) -> bool:
    q = question.strip()
    if _PRONOUN.search(q):
        return True
    if _SWITCH.match(q):
        return True
    return len(tokens(q)) <= 2 and not _names_something(q)


def user_questions(history: Sequence[Message]) -> list[str]:
    """The user's earlier questions, oldest first (empty turns left out)."""
    return [m.content for m in history if m.role == "user" and m.content.strip()]


_MARKER = re.compile(r"\s*\[\d+\]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
LAST_ANSWER_WORDS = 40  # of the assistant's last answer, as a follow-up may refer to it


def last_answer(history: Sequence[Message], refusal: str = "") -> str:
    """The opening of the assistant's reply to the last user turn, without citation markers
    or markup: "Which country does it cover?" is answered "Japan", and "that country" in the
    next question means Japan. Empty when there is no such reply or it was `refusal`."""
    turns = [m for m in history if m.content.strip()]
    if len(turns) < 2 or turns[-1].role != "assistant" or turns[-2].role != "user":
        return ""
    text = strip_markup(turns[-1].content)
    if refusal and text.startswith(refusal):
        return ""
    text = _MARKER.sub("", text)
    words: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        if words and len(words) + len(sentence.split()) > LAST_ANSWER_WORDS:
            break
        words += sentence.split()
    return " ".join(words[:LAST_ANSWER_WORDS])


_DEMONSTRATIVE = re.compile(r"\b(?:that|this|these|those|same)\s+([\w-]+)", re.IGNORECASE)


def points_at_answer(question: str, previous: str) -> str | None:
    """The words of the follow-up that point at what the previous question asked for: after
    "Which country does the project cover?", "that country" is the country the answer gave,
    not the project. None when there are none."""
    asked = {stem(m["noun"]) for m in _WH_NOUN.finditer(previous)
             if m["wh"].lower() in {"which", "what"}}
    return next((m.group(0) for m in _DEMONSTRATIVE.finditer(question)
                 if stem(m.group(1)) in asked), None)


def answer_pointed_at(question: str, previous: str,
                      history: Sequence[Message], refusal: str = "") -> tuple[str, str]:
    """("that country", the opening of the last answer) when the follow-up points at what
    `previous`, the last question, asked for and that answer is there; ("", "") otherwise."""
    words = points_at_answer(question, previous)
    answer = last_answer(history, refusal) if words else ""
    return (words, answer) if words and answer else ("", "")


_SEVERAL = re.compile(r"^\s*(?:please\s+)?(?:list|name|enumerate)\b|\b(?:what|which) are\b",
                      re.IGNORECASE)
# "What safety rules must every port follow?": the noun before the auxiliary.
_SEVERAL_NOUN = re.compile(rf"\b(?:which|what)\s+(?:(?!{_AUX}\b)[\w'’-]+\s+){{0,5}}?"
                           rf"(?P<noun>[\w-]+)\s+{_AUX}\b", re.IGNORECASE)
# "Which harbour fees apply?": one of the two words after "which" (no auxiliary follows).
# A verb there ("Which office runs ...") reads as a plural: the whole list then competes
# with the sentences, as it did for every "which" question before.
_WHICH_NOUN = re.compile(rf"\bwhich\s+(?!{_AUX}\b)([\w-]+)(?:\s+(?!{_AUX}\b)([\w-]+))?",
                         re.IGNORECASE)


def _plural(word: str) -> bool:
    w = word.lower()
    return len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is"))


def asks_for_several(question: str) -> bool:
    """Does the question ask for a list? "What goals do the signatories share?", "Which
    countries took part?", "Name the partnerships": it asks what or which of a plural noun,
    or to list or name things. "Which harbour project covers Zork?" asks for one."""
    if _SEVERAL.search(question):
        return True
    nouns = [m["noun"] for m in _SEVERAL_NOUN.finditer(question)]
    nouns += [w for m in _WHICH_NOUN.finditer(question) for w in m.groups() if w]
    return any(_plural(n) for n in nouns)


def since_own_subject(questions: Sequence[str]) -> list[str]:
    """The earlier questions from the last one that names its own subject (has no pronoun):
    a pronoun refers to that question's subject, or to what a later follow-up of it said."""
    for i in range(len(questions) - 1, -1, -1):
        if not _PRONOUN.search(questions[i]):
            return list(questions[i:])
    return list(questions)


def new_name(answer: str, question: str) -> str:
    """The first run of capitalised words in `answer` that `question` does not use: what
    the answer gave for "Which country ...?" ("Harbour: Portugal" -> "Portugal")."""
    asked = {w.lower() for w in re.findall(r"[\w'’!-]+", question)}
    run: list[str] = []
    for w in re.findall(r"[\w'’!-]+|[^\w\s]", answer):
        if (_is_name(w) and w.lower() not in asked and w.lower() not in STOPWORDS
                and len(run) < 6):
            run.append(w)
        elif run:
            break
    return " ".join(run)


def rewrite(question: str, history: Sequence[Message]) -> str:
    """A standalone version of `question` given earlier turns (unchanged when not needed)."""
    asked = user_questions(history)
    pointer, answer = answer_pointed_at(question, asked[-1], history) if asked else ("", "")
    name = new_name(answer, asked[-1]) if answer else ""
    if name:
        return resolve(question, name, pointer)
    previous = since_own_subject(asked)
    if not previous or not needs_context(question):
        return question.strip()
    source = previous[0]
    topic = topic_of(source)
    if not topic or set(tokens(topic)) <= set(tokens(question)):
        return question.strip()
    q = question.strip()
    switch = _SWITCH.match(q)
    if switch and not _PRONOUN.search(q):
        if _FRAME.match(switch.group(1)):
            # "And what does the Coastal Fund do?": a whole question after "and".
            whole = switch.group(1).strip()
            return whole[:1].upper() + whole[1:] + ("?" if q.endswith("?") else "")
        if topic in source and any(_is_name(w) for w in switch.group(1).split()):
            # "And CyberEast?" after "What is the YAKSHA project?": same question, new subject.
            return source.replace(topic, switch.group(1), 1)
    if _PRONOUN.search(q):
        return resolve(q, topic)
    return f"{q.rstrip('?')} ({topic})?" if q.endswith("?") else f"{q} ({topic})"


def pronoun(question: str) -> str | None:
    """The follow-up's first word that refers back ("it", "its", "these", ...), if any."""
    m = _PRONOUN.search(question)
    return m.group(1) if m else None


def resolve(question: str, referent: str, words: str = "") -> str:
    """The question with its first pronoun, or `words` when given ("that country"), replaced
    by `referent` ("its" by "referent's"): every other word the user wrote stays as
    written."""
    m = (re.search(rf"{re.escape(words)}(?:'s)?", question) if words
         else _PRONOUN.search(question))
    if m is None:
        return question.strip()
    referent = referent.strip(" ?.,")
    if m.group(0).lower() in {"its", "their"} or m.group(0).endswith("'s"):
        referent += "'s"
    return (question[: m.start()] + referent + question[m.end():]).strip()


_PART = re.compile(
    r"(?:,\s*and\s+|;\s*|\s+and\s+)(?=(?:(?:in|on|at|for|by|from|to|with|since)\s+)?"
    r"(?:what|which|who|whom|when|where|why|how|does|do|did|is|are|was|were|can)\b)",
    re.IGNORECASE,
)


def split_parts(question: str) -> list[str]:
    """"Which company was hit by NotPetya, and how many accounts did Yahoo! lose?" -> 2 parts.

    Only splits where a new question clause starts, so "Brazil and China" stays whole.
    A later part's pronoun is read as the first part's subject ("..., and which website
    tells more about it?"): each part is searched for on its own.
    """
    parts = [p.strip(" ,;") for p in _PART.split(question) if p.strip(" ,;?")]
    if len(parts) < 2 or any(len(tokens(p)) < 2 for p in parts):
        return [question]
    parts = [p if p.endswith("?") else p + "?" for p in parts[:3]]
    topic = topic_of(parts[0])
    return parts[:1] + [resolve(p, topic) if topic and _PRONOUN.search(p) else p
                        for p in parts[1:]]


# Markup a question may arrive wrapped in: it is not what is asked. A chat template's
# system turn sets rules, so its text goes with it; a role label ("User:", "### Response:")
# and Markdown emphasis go, their text stays.
_SYSTEM_TURN = re.compile(
    r"<\|im_start\|>\s*system\b.*?(?:<\|im_end\|>|$)|<<SYS>>.*?(?:<</SYS>>|$)|"
    r"<\|start_header_id\|>\s*system\s*<\|end_header_id\|>.*?(?:<\|eot_id\|>|$)|"
    r"<start_of_turn>\s*system\b.*?(?:<end_of_turn>|$)",
    re.IGNORECASE | re.DOTALL)
_HIDDEN = re.compile(r"<!--.*?(?:-->|$)|<(script|style)\b[^>]*>.*?(?:</\1\s*>|$)",
                     re.IGNORECASE | re.DOTALL)
_TEMPLATE = re.compile(
    r"<\|[^|<>]{1,40}\|>(?:\s*(?:system|user|assistant)\b)?|"
    r"</?(?:start_of_turn|end_of_turn|bos|eos|s)>(?:\s*(?:user|model|assistant)\b)?|"
    r"\[/?INST\]",
    re.IGNORECASE)
_ROLE = re.compile(r"(?:^|(?<=\n))\s*(?:#{1,6}\s*)?(?:human|user|assistant|system|question|"
                   r"instruction|input|response|answer|query|q)\s*:[ \t]*",
                   re.IGNORECASE)
# A tag's attributes are name=value pairs: "<the NIS Directive>" or "<Which project ...?>"
# is the user's text in angle brackets, not a tag, and stays.
_ATTRIBUTE = (r"""\s+[^\s<>"'=/]{1,40}\s*=\s*"""
              r"""(?:"[^"<>]{0,200}"|'[^'<>]{0,200}'|[^\s<>"'=`]{1,200})""")
_TAG = re.compile(rf"</?[A-Za-z][A-Za-z0-9-]*(?:{_ATTRIBUTE}){{0,20}}\s*/?>")
# A code fence with its language ("```html") and an XML CDATA wrapper are markup too.
_WRAPPER = re.compile(r"(?:^|(?<=\n))[ \t]*`{3,}[\w+.-]*|<!\[CDATA\[|\]\]>")
_MARKDOWN = re.compile(r"`{1,3}|(?<!\w)(?:\*{1,3}|_{2,3})(?=\S)|(?<=\S)(?:\*{1,3}|_{2,3})(?!\w)|"
                       r"(?:^|(?<=\n))\s*(?:#{1,6}|>)\s+")
_SPACED_MARK = re.compile(r"\s+([?!.,;:])(?=\s|$)")  # "EC3 ?" once "<i>EC3</i> ?" is gone


def strip_markup(question: str) -> str:
    """The question without HTML, Markdown or chat-template markup (unchanged when it has
    none). Escaped tags ("&lt;b&gt;") are unescaped first, so they go as well."""
    text = html.unescape(question)
    for pattern in (_SYSTEM_TURN, _HIDDEN, _TEMPLATE, _WRAPPER, _TAG):
        text = pattern.sub("\n", text)
    text = _MARKDOWN.sub(" ", _ROLE.sub("\n", text))
    text = " ".join(text.split())
    text = _SPACED_MARK.sub(r"\1", text)
    return text or question.strip()


# Function words that mark a language; the embedding model and the keyword index read
# English, so a question in another language is translated before retrieval.
_FUNCTION_WORDS = {
    "en": "the of and to in is are what which who how does do did was were for on with by a an "
          "it its that this can has have from at as be",
    "fr": "le la les des du de est sont quel quelle quels quelles qui que comment pour dans "
          "avec une un au aux à combien pourquoi où quand elle il ont",
    "de": "der die das den dem des ist sind welche welcher welches wer wie was für mit und "
          "ein eine im zu von wieviel viele warum wann wo hat",
    "es": "el la los las del de es son qué cuál cuáles quién cómo para con en una un por y "
          "cuánto cuántos cuántas dónde cuándo ha",
    "it": "il lo la gli le dei delle del di è sono quale quali chi come per con una un nel "
          "della che quanto quanti quante perché dove quando ha",
    "nl": "de het een van en is zijn wat welke wie hoe voor met op door niet ook wordt "
          "hoeveel waarom waar wanneer heeft",
    "pt": "o os as do da dos das de é são qual quais quem como para com em uma um por "
          "quanto quantos quantas onde quando tem",
    "pl": "jest są co jaki jaka jakie które który kto jak dla na w z do przez czy nie "
          "ile dlaczego gdzie kiedy ma",
}
_LANG_WORDS = {lang: frozenset(ws.split()) for lang, ws in _FUNCTION_WORDS.items()}


def function_words(lang: str) -> frozenset[str]:
    """The function words that mark `lang` (empty for a language not listed)."""
    return _LANG_WORDS.get(lang, frozenset())


def language(question: str) -> str:
    """The language ("en", "fr", "de", "es", "it", "nl", "pt" or "pl") whose function words
    the question uses most (English on a tie); "other" for a question of four words or more
    with no English function word (any other language, or another script), so that it is
    translated too; "en" for a shorter one."""
    ws = [w.lower() for w in re.findall(r"[^\W\d_]+", question)]
    counts = {lang: sum(w in vocab for w in ws) for lang, vocab in _LANG_WORDS.items()}
    best = max(counts, key=lambda lang: (counts[lang], lang == "en"))
    if counts[best] > counts["en"]:
        return best
    if not counts["en"] and len(ws) >= 4:
        return "other"
    return "en"
