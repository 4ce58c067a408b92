"""The families at a glance (`aqa models`): each published checkpoint with its parameters and weights per precision,
counted from the family's published shapes, and its published scores with their sources."""

from __future__ import annotations

from dataclasses import dataclass

from aqa.families.base import Family, Parameters, Published, family_parameters


@dataclass(frozen=True)
class Entry:
    family: Family
    checkpoint: Published
    counts: Parameters  # of the model that answers (an Omni checkpoint's thinker), at the published size

    def weight_gib(self, precision: str) -> float | None:
        """GiB of weights in `precision`; None for 4/8-bit where they are refused (Parameters.quantizes_well)."""
        if precision in ("4bit", "8bit") and not self.counts.quantizes_well:
            return None
        return self.counts.weight_bytes(precision) / 2**30


def catalogue(families: list[Family]) -> list[Entry]:
    """One entry per published checkpoint of each family, its counts from the family's full-size config."""
    entries = []
    for family in families:
        counts = family_parameters(family, family.build_config(family.build_tokenizer(), "full"))
        entries += [Entry(family, checkpoint, counts) for checkpoint in family.published]
    return entries


def markdown(entries: list[Entry]) -> str:
    """The table `aqa models` prints (and docs/models.md shows)."""
    columns = ["family", "checkpoint (Hub id)", "parameters", "bf16 GiB", "4-bit GiB", "MMAU test-mini", "MMAR"]
    columns += ["sources", "licence"]
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for entry in entries:
        published = entry.checkpoint
        four_bit = entry.weight_gib("4bit")
        four_bit = f"{four_bit:.1f}" if four_bit is not None else "refused (fused experts)"
        lines.append(
            f"| {entry.family.name} | `{published.hub_id}` | {entry.counts.total / 1e9:.2f}B | "
            f"{entry.weight_gib('bf16'):.1f} | {four_bit} | {published.mmau} | {published.mmar} | "
            f"{published.sources} | {published.license} |"
        )
    return "\n".join(lines)
