"""The scripted "model" behind the tutorials' bundled cassettes.

Everything the root model and the sub-model say in ``cassettes/*.jsonl`` was
WRITTEN HERE by the rlm_magic authors to demonstrate the workflow.  None of it
was recorded from a live model.  What is real: the code in those replies runs
in the REPL on the notebooks' real data, so every number in the tutorials is
computed; the sub-model's replies below are computed from the prompt it was
sent (by keyword rules, standing in for a model reading the text); and the
token counts are the stand-in server's word counts (see
``rlm_magic.scripted``).

``build_cassettes.py`` serves these scripts from a
:class:`rlm_magic.scripted.ScriptedServer` on 127.0.0.1 while it executes each
notebook in record mode.  The notebooks never import this module.

Root-model scripts are keyed by the question (and, where one question is asked
several times, by the mode or budget the system prompt states), and answered
turn by turn: the n-th reply of a conversation is the reply to a request that
already holds n-1 assistant messages.  The reply to the last, best-answer call
after a budget runs out is given separately (``final=``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rlm_magic.scripted import Request, code_reply

#: The start of the engine's message when a budget ran out (rlm_magic.prompts.budget_exhausted).
_OUT_OF_BUDGET = "The run is out of budget"


def _question(request: Request) -> str:
    first = next((m.get("content") or "" for m in request.messages if m.get("role") == "user"), "")
    return first.split("\n\nVariables in the REPL:", 1)[0].removeprefix("Question:\n")


def _mode(request: Request) -> str:
    system = request.system or ""
    if "There is no sub-model in this run" in system:
        return "no_subcalls"
    if "Sub-calls cost money" in system:
        return "conservative"
    return "standard"


def _max_llm_calls(request: Request) -> int | None:
    match = re.search(r"at most (\d+) model calls", request.system or "")
    return int(match.group(1)) if match else None


@dataclass
class _Script:
    question: str  # a substring of the question
    replies: list[str]
    final: str | None = None
    mode: str | None = None
    max_llm_calls: int | None = None

    def matches(self, request: Request) -> bool:
        return (self.question in _question(request)
                and (self.mode is None or self.mode == _mode(request))
                and (self.max_llm_calls is None or self.max_llm_calls == _max_llm_calls(request)))


@dataclass
class Conversation:
    """A root-model handler for :class:`ScriptedServer`: one list of replies per question."""

    scripts: list[_Script] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # what went unanswered, for the build's report

    def add(self, question: str, replies: list[str], *, final: str | None = None, mode: str | None = None,
            max_llm_calls: int | None = None) -> Conversation:
        self.scripts.append(_Script(question, replies, final, mode, max_llm_calls))
        return self

    def __call__(self, request: Request) -> str:
        matching = [s for s in self.scripts if s.matches(request)]
        if len(matching) != 1:
            return self._fail(f"{len(matching)} scripts match the question {_question(request)[:80]!r} "
                              f"(mode {_mode(request)}, max_llm_calls {_max_llm_calls(request)})")
        script = matching[0]
        if request.prompt.startswith(_OUT_OF_BUDGET):
            return script.final if script.final is not None else self._fail(f"no final reply for {script.question!r}")
        turn = sum(1 for m in request.messages if m.get("role") == "assistant")
        if turn >= len(script.replies):
            return self._fail(f"the script for {script.question!r} has {len(script.replies)} replies; turn {turn + 1} asked")
        return script.replies[turn]

    def _fail(self, message: str) -> str:
        self.errors.append(message)
        raise LookupError(message)


def _sub_handler(fn: Callable[[str], str], errors: list[str]) -> Callable[[Request], str]:
    def handler(request: Request) -> str:
        try:
            return fn(request.prompt)
        except Exception as exc:
            errors.append(f"sub-model handler: {type(exc).__name__}: {exc}")
            raise

    return handler


# ---------------------------------------------------------------------------
# quickstart.ipynb
# ---------------------------------------------------------------------------
def quickstart() -> dict[str, Any]:
    root = Conversation()
    root.add("Which region has the highest total revenue", [
        code_reply(
            "print(context.shape)\nprint(context.dtypes)\nprint(context.head(3))",
            "I'll start by checking the frame's shape, columns and a few rows.",
        ),
        code_reply(
            "totals = context.groupby('region')['revenue'].sum().sort_values(ascending=False)\n"
            "share = (totals / totals.sum()).round(3)\n"
            "print(totals.round(0))\n"
            "print(share)\n"
            "mix = context.pivot_table(index='region', columns='product', values='revenue', aggfunc='sum').round(0)\n"
            "units = context.pivot_table(index='region', columns='product', values='units', aggfunc='sum')\n"
            "print(mix)\n"
            "print(units)",
            "Now the revenue total per region, and the product mix behind it.",
        ),
        code_reply(
            "why = llm_query(\n"
            "    'Revenue by region and product:\\n' + mix.to_string() +\n"
            "    '\\n\\nUnits by region and product:\\n' + units.to_string() +\n"
            "    '\\n\\nIn one or two sentences: why does ' + totals.index[0] + ' have the highest revenue?'\n"
            ")\n"
            "print(why)",
            "The leader is clear. I'll ask the sub-model to explain the gap from the two tables.",
        ),
        code_reply(
            "SUBMIT(\n"
            "    answer=f'{totals.index[0]} has the highest total revenue ({totals.iloc[0]:,.0f}). ' + why,\n"
            "    totals=totals.round(2).to_frame('revenue'),\n"
            "    share=share,\n"
            ")",
            "That explains it; submitting the answer with the totals.",
        ),
    ])
    root.add("Which product sold the most units in 2024", [
        code_reply(
            "by_product = recent.groupby('product')['units'].sum().sort_values(ascending=False)\nprint(by_product)",
            "Units per product in the 2024 slice.",
        ),
        code_reply(
            "SUBMIT(f'{by_product.index[0]} sold the most units in 2024 ({by_product.iloc[0]:,}).', "
            "units_2024=by_product)",
        ),
    ])

    def reader(prompt: str) -> str:
        return ("West sells about as many units as the other regions, but a much larger share of them are "
                "the high-priced Pro line, so its revenue per unit, and therefore its total, is highest.")

    return {"analyst": root, "reader": _sub_handler(reader, root.errors)}


# ---------------------------------------------------------------------------
# long_documents.ipynb
# ---------------------------------------------------------------------------
#: How the stand-in sub-model tells a cause from a failure sentence (a real model would read it).
_CAUSE_WORDS = {
    "icing": ("ice built up", "rime", "freezing"),
    "power": ("battery", "power", "generator"),
    "animals": ("fox", "lemming", "gull"),
    "lightning": ("lightning", "thunderstorm"),
    "software": ("firmware", "clock"),
}
_FAILING = re.compile(r"stopped recording|went offline|failed|was down|were down")


def _read_station_reports(prompt: str) -> str:
    """The stand-in sub-model: one JSON line per report whose failure sentence names an equipment cause."""
    lines = []
    for block in prompt.split("=== Report ")[1:]:
        number = block[:5]
        for sentence in re.split(r"(?<=\.) ", block):
            if not _FAILING.search(sentence):
                continue
            low = sentence.lower()
            cause = next((c for c, words in _CAUSE_WORDS.items() if any(w in low for w in words)), None)
            if cause is not None:
                lines.append(json.dumps({"report": number, "cause": cause}))
    return "\n".join(lines)


def long_documents() -> dict[str, Any]:
    root = Conversation()
    root.add("padlock on the equipment shed", [
        code_reply(
            "import re\n"
            "from collections import Counter\n"
            "hits = re.findall(r'[^.\\n]*\\b(?:padlock|lock|combination|code)\\b[^.\\n]*\\.', logs)\n"
            "print(len(hits), 'sentences mention a padlock, a lock, a code or a combination')\n"
            "# group them by shape (digits masked) to see what kinds there are\n"
            "shapes = Counter(re.sub(r'\\d+', '#', h.strip()) for h in hits)\n"
            "for shape, n in shapes.most_common(10):\n"
            "    print(f'{n:>6}  {shape}')",
            "The text is 11 MB, so I'll search it with a regular expression instead of reading it.",
        ),
        code_reply(
            "for m in re.finditer(r'padlock', logs):\n"
            "    start = logs.rfind('=== Report', 0, m.start())\n"
            "    header = logs[start:logs.index('\\n', start)]\n"
            "    sentence = logs[logs.rfind('. ', 0, m.start()) + 2:logs.find('.', m.start()) + 1]\n"
            "    print(header, '|', sentence)",
            "Almost all hits are the routine visibility line. Three sentences mention a padlock; "
            "I'll print each with the header of its report.",
        ),
        code_reply(
            "m = re.search(r'padlock on the equipment shed now opens with ([\\d-]+)', logs)\n"
            "start = logs.rfind('=== Report', 0, m.start())\n"
            "report, station, date = re.match(r'=== Report (\\d+) · station (\\S+) · (\\S+) ===', logs[start:]).groups()\n"
            "SUBMIT(\n"
            "    f'The equipment-shed padlock opens with {m.group(1)}: report {report} from station {station}, '\n"
            "    f'written on {date}. (Two other reports mention a padlock, on the fuel store.)',\n"
            "    combination=m.group(1), report=report, station=station, date=date,\n"
            ")",
            "Only report 16072 is about the equipment shed. Submitting its combination, station and date.",
        ),
    ])
    root.add("What causes equipment failures most often", [
        code_reply(
            "import re\n"
            "reports = logs.split('\\n\\n')\n"
            "failing = re.compile(r'stopped recording|went offline|failed|was down|were down')\n"
            "candidates = [r for r in reports if failing.search(r)]\n"
            "print(len(reports), 'reports;', len(candidates), 'mention something failing or going down')\n"
            "sentences = [s for r in candidates for s in re.split(r'(?<=\\.) ', r) if failing.search(s)]\n"
            "print(len(set(sentences)), 'distinct sentences, for example:')\n"
            "for s in sorted(set(sentences))[::3]:\n"
            "    print(' ', s)",
            "First I'll split the logs into reports and keep those that mention something failing.",
        ),
        code_reply(
            "import json\n"
            "chunks, current = [], ''\n"
            "for r in candidates:\n"
            "    if current and len(current) + len(r) > 10_000:\n"
            "        chunks.append(current)\n"
            "        current = ''\n"
            "    current += r + '\\n\\n'\n"
            "chunks.append(current)\n"
            "instructions = (\n"
            "    'Below are reports from weather stations. For every report that describes an instrument or '\n"
            "    'equipment failure, write one line of JSON: {\"report\": \"<5-digit number>\", '\n"
            "    '\"cause\": \"<icing|power|animals|lightning|software|other>\"}. Skip reports in which no '\n"
            "    'equipment broke (a supply boat that failed to dock is not an equipment failure). '\n"
            "    'Reply with the JSON lines only.\\n\\n'\n"
            ")\n"
            "replies = llm_query_batched([instructions + c for c in chunks])\n"
            "errors = [r for r in replies if r.startswith('[llm_query error]')]\n"
            "found = pd.DataFrame([json.loads(line) for r in replies if r not in errors\n"
            "                      for line in r.splitlines() if line.startswith('{')])\n"
            "print(len(chunks), 'chunks of at most 10,000 characters;', len(errors), 'failed;',\n"
            "      len(found), 'equipment failures found')\n"
            "print(found.cause.value_counts())",
            "Keywords cannot tell an instrument failure from a boat that failed to dock, and the causes are "
            "phrased in many ways. I'll have the sub-model read the candidates in chunks of about 10,000 "
            "characters, all at once with llm_query_batched, and return one JSON line per failure.",
        ),
        code_reply(
            "header = re.compile(r'=== Report (\\d+) · station (\\S+) · (\\S+) ===')\n"
            "meta = pd.DataFrame([header.match(r).groups() for r in candidates], columns=['report', 'station', 'date'])\n"
            "failures = found.merge(meta, on='report')\n"
            "causes = failures.cause.value_counts().rename_axis('cause').to_frame('failures')\n"
            "by_station = failures.station.value_counts()\n"
            "print(causes)\n"
            "print(by_station.head(3))",
            "Now the counts per cause and per station, joining the report numbers to their headers.",
        ),
        code_reply(
            "top = causes.index[0]\n"
            "SUBMIT(\n"
            "    f'{top.capitalize()} is the most common cause: {causes.failures.iloc[0]} of the '\n"
            "    f'{len(failures)} equipment failures in the logs, ahead of {causes.index[1]} '\n"
            "    f'({causes.failures.iloc[1]}). {by_station.index[0]} has the most failures '\n"
            "    f'({by_station.iloc[0]}; next is {by_station.index[1]} with {by_station.iloc[1]}).',\n"
            "    causes=causes, failures=failures,\n"
            ")",
            "Icing leads clearly, and one station stands out. Submitting the counts and the list of failures.",
        ),
    ])
    return {"analyst": root, "reader": _sub_handler(_read_station_reports, root.errors)}


# ---------------------------------------------------------------------------
# subcalls_and_budgets.ipynb
# ---------------------------------------------------------------------------
#: How the stand-in sub-model recognises each complaint theme (a real model would read the review).
_THEME_WORDS = {
    "battery life": ("battery", "charging", "runs flat"),
    "companion app": ("app",),
    "noise": ("fan", "whines", "noisy"),
    "price": ("expensive", "worth the money", "overpriced"),
    "delivery": ("arrived", "crushed", "delivery"),
}


def _themes_in(line: str) -> list[str]:
    low = line.lower()
    return [theme for theme, words in _THEME_WORDS.items() if any(re.search(rf"\b{w}\b", low) for w in words)]


def _read_reviews(prompt: str) -> str:
    """The stand-in sub-model for the reviews: theme counts, or keywords per theme."""
    head, _, body = prompt.partition("\n\n")
    lines = [line for line in body.splitlines() if line.strip()]
    if "keywords" in head:  # conservative mode: name the themes and how to find them
        seen = {t for line in lines for t in _themes_in(line)}
        return json.dumps({t: list(words) for t, words in _THEME_WORDS.items() if t in seen})
    counts = Counter(t for line in lines for t in _themes_in(line))
    return json.dumps(dict(counts.most_common()))


_PRO_QUESTION = "What do unhappy customers of the Pro model complain about most?"

#: The Pro-reviews runs end the same way whatever found the themes: shares of all unhappy reviews.
_SUBMIT_THEMES = (
    "share = (counts / len(unhappy)).round(2).rename('share of reviews')\n"
    "SUBMIT(\n"
    "    f'{share.index[0].capitalize()} is the most common complaint ({share.iloc[0]:.0%} of all '\n"
    "    f'{len(unhappy):,} unhappy Pro reviews), then {share.index[1]} ({share.iloc[1]:.0%}) and '\n"
    "    f'{share.index[2]} ({share.iloc[2]:.0%}).',\n"
    "    themes=share,\n"
    ")"
)

_LOOK = code_reply(
    "print(reviews.groupby('product').stars.agg(['count', 'mean']).round(2))\n"
    "unhappy = reviews[(reviews['product'] == 'Pro') & (reviews.stars <= 2)]\n"
    "print(len(unhappy), 'Pro reviews with 1 or 2 stars, for example:')\n"
    "for t in unhappy.text.sample(5, random_state=0):\n"
    "    print(' ', t)",
    "First the ratings per product, and what the unhappy Pro reviews look like.",
)


def subcalls_and_budgets() -> dict[str, Any]:
    root = Conversation()
    standard_read = code_reply(
        "import json\n"
        "from collections import Counter\n"
        "sample = unhappy.text.sample(120, random_state=1).tolist()\n"
        "chunks = [sample[i:i + 30] for i in range(0, len(sample), 30)]\n"
        "ask = ('Here are customer reviews of a product, one per line. Name the complaints they make, grouped '\n"
        "       'into short themes, and count the reviews per theme. Reply with one JSON object '\n"
        "       '{\"theme\": count, ...} and nothing else.\\n\\n')\n"
        "replies = llm_query_batched([ask + '\\n'.join(c) for c in chunks])\n"
        "counts, read = Counter(), 0\n"
        "for chunk, r in zip(chunks, replies):\n"
        "    if r.startswith('[llm_query error]'):\n"
        "        print(r)\n"
        "    else:\n"
        "        counts.update(json.loads(r))\n"
        "        read += len(chunk)\n"
        "print(f'{read} of {len(sample)} sampled reviews read:', counts.most_common())",
        "The complaints are free text. I'll have the sub-model read a random sample of 120 in four chunks, "
        "concurrently, and count the themes.",
    )
    root.add(_PRO_QUESTION, mode="standard", max_llm_calls=50, replies=[
        _LOOK,
        standard_read,
        code_reply(
            "share = (pd.Series(dict(counts.most_common())) / read).round(2).rename('share of reviews')\n"
            "SUBMIT(\n"
            "    f'{share.index[0].capitalize()} is the most common complaint ({share.iloc[0]:.0%} of a sample of '\n"
            "    f'{read} unhappy Pro reviews), then {share.index[1]} ({share.iloc[1]:.0%}) and '\n"
            "    f'{share.index[2]} ({share.iloc[2]:.0%}).',\n"
            "    themes=share,\n"
            ")",
            "Battery life leads clearly. Submitting the shares from the sample.",
        ),
    ], final=(
        "The cost budget ran out after I had read the sample.\n\n"
        "FINAL(Battery life is the most common complaint: 67 of the 120 sampled unhappy Pro reviews mention it, "
        "then the companion app (37) and price (25).)"
    ))
    root.add(_PRO_QUESTION, mode="standard", max_llm_calls=4, replies=[_LOOK, standard_read], final=(
        "I could read only part of the sample before the call budget ran out.\n\n"
        "FINAL(From the 60 sampled reviews that were read (two of the four chunks were not, as the call budget "
        "ran out), battery life is the most common complaint (36 of 60), then the companion app (17) and price "
        "(14). The sample is half the planned size, so treat the order of the last two as uncertain.)"
    ))
    root.add(_PRO_QUESTION, mode="conservative", replies=[
        _LOOK,
        code_reply(
            "import json\n"
            "sample = unhappy.text.sample(40, random_state=1).tolist()\n"
            "reply = llm_query('Here are customer complaints, one per line. Group them into themes, and for '\n"
            "                  'each theme give a few lowercase keywords or phrases that identify it in other '\n"
            "                  'reviews. Reply with one JSON object {\"theme\": [\"keyword\", ...], ...} and '\n"
            "                  'nothing else.\\n\\n' + '\\n'.join(sample))\n"
            "keywords = json.loads(reply)\n"
            "print(keywords)\n"
            "text = unhappy.text.str.lower()\n"
            "counts = pd.Series({theme: int(text.str.contains('|'.join(rf'\\b{w}\\b' for w in words)).sum())\n"
            "                    for theme, words in keywords.items()}).sort_values(ascending=False)\n"
            "print(counts)",
            "Sub-calls are expensive here, so one call on a sample of 40 to name the themes and their keywords; "
            "then I count every unhappy review with pandas.",
        ),
        code_reply(_SUBMIT_THEMES, "Counted over all unhappy Pro reviews. Submitting."),
    ])
    root.add(_PRO_QUESTION, mode="no_subcalls", replies=[
        _LOOK,
        code_reply(
            "import re\n"
            "from collections import Counter\n"
            "def words(texts):\n"
            "    return Counter(w for t in texts for w in re.findall(r'[a-z]+', t.lower()))\n"
            "bad, good = words(unhappy.text), words(reviews.text[reviews.stars >= 4])\n"
            "distinct = [w for w, n in bad.most_common() if n > 50 and len(w) > 3 and good[w] < n / 10]\n"
            "print(len(distinct), 'words common in unhappy Pro reviews and rare in happy ones:')\n"
            "for i in range(0, len(distinct), 12):\n"
            "    print(' ', ', '.join(distinct[i:i + 12]))",
            "No sub-model in this run, so I'll find the words that set unhappy Pro reviews apart from happy ones.",
        ),
        code_reply(
            "keywords = {'battery life': ['battery', 'charging', 'runs flat'], 'companion app': ['app'],\n"
            "            'noise': ['fan', 'whines', 'noisy'], 'price': ['expensive', 'worth the money', 'overpriced'],\n"
            "            'delivery': ['arrived', 'crushed', 'delivery']}\n"
            "text = unhappy.text.str.lower()\n"
            "counts = pd.Series({theme: int(text.str.contains('|'.join(rf'\\b{w}\\b' for w in words)).sum())\n"
            "                    for theme, words in keywords.items()}).sort_values(ascending=False)\n"
            "print(counts)",
            "Those words fall into five themes. I'll count the reviews that mention each.",
        ),
        code_reply(_SUBMIT_THEMES),
    ])
    return {"gpt-4o": root, "gpt-4o-mini": _sub_handler(_read_reviews, root.errors)}


# ---------------------------------------------------------------------------
# results_as_variables.ipynb
# ---------------------------------------------------------------------------
def results_as_variables() -> dict[str, Any]:
    root = Conversation()
    root.add("Summarize the 2024 orders", [
        code_reply(
            "print(orders.dtypes)\n"
            "print(orders.date.min(), 'to', orders.date.max())\n"
            "print(orders.describe().round(2))",
            "Let me see the columns, the date range and the value ranges.",
        ),
        code_reply(
            "revenue = orders.groupby('country').agg(revenue=('amount', 'sum'), orders=('order_id', 'count'))\n"
            "revenue = revenue.sort_values('revenue', ascending=False)\n"
            "top_countries = revenue.head(5).round(2)\n"
            "monthly = orders.groupby(orders.date.dt.strftime('%Y-%m')).amount.sum().round(2).rename('revenue')\n"
            "n_customers = orders.customer.nunique()\n"
            "top5_share = round(top_countries.revenue.sum() / orders.amount.sum(), 3)\n"
            "share = revenue.revenue / revenue.revenue.sum()\n"
            "small_markets = share[share < 0.03].index.tolist()\n"
            "order_size = {'median': float(orders.amount.median()), 'p90': float(orders.amount.quantile(0.9)),\n"
            "              'max': float(orders.amount.max())}\n"
            "size_histogram = np.histogram(orders.amount, bins=[0, 25, 50, 100, 200, 500])[0]\n"
            "busiest_day = orders.groupby('date').amount.sum().idxmax()\n"
            "print(top_countries)\n"
            "print(monthly.describe().round(2))\n"
            "print(n_customers, top5_share, small_markets, order_size, size_histogram, busiest_day, sep='\\n')",
            "Now each requested value, under the name I will hand it back with.",
        ),
        code_reply(
            "SUBMIT(\n"
            "    f'{orders.amount.sum():,.0f} in revenue from {len(orders):,} orders by {n_customers:,} customers. '\n"
            "    f'The top five countries ({\", \".join(top_countries.index)}) bring {top5_share:.0%} of it; '\n"
            "    f'the busiest day was {busiest_day:%Y-%m-%d}.',\n"
            "    top_countries=top_countries, monthly=monthly, n_customers=n_customers, top5_share=top5_share,\n"
            "    small_markets=small_markets, order_size=order_size, size_histogram=size_histogram,\n"
            "    busiest_day=busiest_day,\n"
            ")",
            "All values computed; handing each back under its own name.",
        ),
    ])
    root.add("For Germany only", [
        code_reply(
            "monthly = orders.groupby(orders.date.dt.strftime('%Y-%m')).amount.sum().round(2).rename('revenue')\n"
            "vs_average = (monthly / monthly.mean() - 1).round(3)\n"
            "print(monthly.describe().round(2))\n"
            "print(vs_average.sort_values().iloc[[0, -1]])",
            "Monthly revenue for the German orders, and each month against their average.",
        ),
        code_reply(
            "best, worst = vs_average.idxmax(), vs_average.idxmin()\n"
            "SUBMIT(f'German revenue is flat through the year: the best month ({best}) is {vs_average[best]:+.1%} '\n"
            "       f'and the weakest ({worst}) {vs_average[worst]:+.1%} against the average month.',\n"
            "       monthly=monthly)",
        ),
    ])
    return {"analyst": root}


# ---------------------------------------------------------------------------
# recording_and_replay.ipynb
# ---------------------------------------------------------------------------
_REASONS = {
    "arrived broken": "arrived broken",
    "stopped working": "stopped working",
    "charged twice": "charged twice",
    "not what the website showed": "not as described",
    "too late": "arrived late",
}


def _read_tickets(prompt: str) -> str:
    """The stand-in sub-model for the support tickets: refund requests per reason, as JSON."""
    counts = Counter(label for line in prompt.splitlines() if line.startswith("#")
                     for phrase, label in _REASONS.items() if phrase in line)
    return json.dumps(dict(counts.most_common()))


def recording_and_replay() -> dict[str, Any]:
    root = Conversation()
    root.add("How many tickets ask for a refund", [
        code_reply(
            "import re\n"
            "print(len(tickets), 'tickets, for example:')\n"
            "for t in tickets[:4]:\n"
            "    print(' ', t)\n"
            "refunds = [t for t in tickets if re.search(r'refund|money back', t, re.I)]\n"
            "print(len(refunds), 'ask for a refund or their money back')",
            "Let me look at a few tickets and find the refund requests.",
        ),
        code_reply(
            "import json\n"
            "from collections import Counter\n"
            "chunks = [refunds[i:i + 200] for i in range(0, len(refunds), 200)]\n"
            "ask = ('Here are customer support tickets that ask for a refund, one per line. Count the tickets per '\n"
            "       'reason the customer gives, in a few words per reason. Reply with one JSON object '\n"
            "       '{\"reason\": count, ...} and nothing else.\\n\\n')\n"
            "reasons = Counter()\n"
            "for reply in llm_query_batched([ask + '\\n'.join(c) for c in chunks]):\n"
            "    reasons.update(json.loads(reply))\n"
            "print(reasons.most_common())",
            "The reasons are free text, so the sub-model reads the refund tickets in chunks of 200.",
        ),
        code_reply(
            "reasons = pd.Series(dict(reasons.most_common()), name='tickets')\n"
            "SUBMIT(f'{len(refunds)} of {len(tickets):,} tickets ask for a refund. The most common reason: '\n"
            "       f'{reasons.index[0]} ({reasons.iloc[0]}), then {reasons.index[1]} ({reasons.iloc[1]}).',\n"
            "       reasons=reasons)",
        ),
    ])
    return {"analyst": root, "reader": _sub_handler(_read_tickets, root.errors)}


#: Notebook name -> a function returning the ScriptedServer's models mapping.
SCRIPTS: dict[str, Callable[[], dict[str, Any]]] = {
    "quickstart": quickstart,
    "long_documents": long_documents,
    "subcalls_and_budgets": subcalls_and_budgets,
    "results_as_variables": results_as_variables,
    "recording_and_replay": recording_and_replay,
}


def errors_of(models: dict[str, Any]) -> list[str]:
    """Unanswered requests collected by a notebook's handlers."""
    out: list[str] = []
    for handler in models.values():
        if isinstance(handler, Conversation):
            out.extend(handler.errors)
    return sorted(set(out))


__all__ = ["SCRIPTS", "Conversation", "errors_of"]
