"""`aqa models`: the supported model families, their published checkpoints, sizes and published scores."""

from __future__ import annotations

import argparse
import json


def add_command(commands) -> None:
    parser = commands.add_parser(
        "models",
        help="list the supported model families: Hub ids, parameters, weights per precision, published scores",
        description="The model families every command accepts (--model takes any of their checkpoints, chosen by "
        "its config), with parameters and weights counted from the published shapes, and the published MMAU and "
        "MMAR figures with their sources.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of a Markdown table")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from aqa.families import FAMILIES  # torch and transformers: seconds to import
    from aqa.families.catalogue import catalogue, markdown

    entries = catalogue(list(FAMILIES.values()))
    if not args.json:
        print(markdown(entries))
        return 0
    for entry in entries:
        row = {"family": entry.family.name, "class": entry.family.model_class().__name__}
        row |= {"hub_id": entry.checkpoint.hub_id, "what": entry.checkpoint.what, "parameters": entry.counts.total}
        row |= {f"{precision}_gib": entry.weight_gib(precision) for precision in ("bf16", "fp32", "8bit", "4bit")}
        row |= {"heard_seconds": entry.family.heard_seconds, "mmau": entry.checkpoint.mmau}
        row |= {"mmar": entry.checkpoint.mmar, "sources": entry.checkpoint.sources, "license": entry.checkpoint.license}
        print(json.dumps(row))
    return 0
