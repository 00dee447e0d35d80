"""Scripted stand-in models that let the tutorials run offline.

The replies below were written by the rlm_magic authors to demonstrate the
workflow; they were not recorded from a live model.  The code in them does
the real work on the real data in the REPL, so every number you see is
computed, but the model's "thinking" is ours.  Set RLM_MODEL (and your
provider's API key) to run the notebooks against a real model instead.
"""

from __future__ import annotations

import os

from rlm_magic.scripted import ScriptedServer, code_reply


def live_model() -> str | None:
    """The live model to use, or None when the notebook should run offline."""
    if os.environ.get("RLM_OFFLINE"):
        return None
    return os.environ.get("RLM_MODEL") or None


QUICKSTART_ROOT = [
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
]

QUICKSTART_SUB = (
    "West sells about as many units as the other regions, but a much larger share of them are "
    "the high-priced Pro line, so its revenue per unit, and therefore its total, is highest."
)

FOLLOWUP_ROOT = [
    code_reply(
        "by_product = recent.groupby('product')['units'].sum().sort_values(ascending=False)\nprint(by_product)",
        "Units per product in the 2024 slice.",
    ),
    code_reply(
        "SUBMIT(f'{by_product.index[0]} sold the most units in 2024 ({by_product.iloc[0]:,}).', units_2024=by_product)",
    ),
]


def start_quickstart_model() -> ScriptedServer:
    """Start the stand-in: 'analyst' plays the root model, 'reader' the sub-model."""
    server = ScriptedServer({
        "analyst": QUICKSTART_ROOT + FOLLOWUP_ROOT,
        "reader": lambda request: QUICKSTART_SUB,
    })
    return server.start()
