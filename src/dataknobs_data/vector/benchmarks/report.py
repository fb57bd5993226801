"""Tables of a benchmark run (the JSON checkpoint holds every number): plain text for the
terminal, Markdown for the documentation site (an MkDocs hook renders the committed results file
with :func:`format_markdown`, so the figures on the site are never retyped)."""

from __future__ import annotations

from typing import Any

__all__ = ["COLUMNS", "describe", "format_markdown", "format_report", "report_rows"]

#: The columns of every target's table.
COLUMNS = ["measure", "ours", "raw", "ratio", "notes"]


def _row(cells: list[str], widths: list[int]) -> str:
    last = len(cells) - 1
    return "  ".join(
        c.rjust(w) if 0 < i < last else c.ljust(w)
        for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    ).rstrip()


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [_row(header, widths), _row(["-" * w for w in widths], widths)] + [
        _row(r, widths) for r in rows
    ]


def describe(data: dict[str, Any]) -> list[str]:
    """The run's dataset and machine, one line each."""
    cfg, mach = data["config"], data.get("machine", {})
    return [
        f"dataset: {cfg['n']} x {cfg['dim']} clustered synthetic, metric={cfg['metric']}, "
        f"k={cfg['k']}, {cfg['queries']} queries, best of {cfg['rounds']} interleaved rounds",
        f"machine: {mach.get('cpu_model', '?')}, loadavg {mach.get('loadavg', '?')}",
    ]


def format_report(data: dict[str, Any]) -> str:
    """Human-readable summary: one block per target, ratios against the raw engine."""
    lines = [*describe(data), ""]
    for name, rows in report_rows(data).items():
        lines.append(f"[{name}]")
        lines += _table(COLUMNS, rows)
        lines.append("")
    return "\n".join(lines)


def _cells(row: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"


def format_markdown(data: dict[str, Any], targets: list[str] | None = None) -> str:
    """Markdown tables of a run (one per target, or only ``targets``), for the docs site."""
    lines = [f"*{line}*  " for line in describe(data)] + [""]
    for name, rows in report_rows(data).items():
        if targets is not None and name not in targets:
            continue
        lines += [f"**{name}**", "", _cells(COLUMNS), _cells(["---"] * len(COLUMNS))]
        lines += [_cells(row) for row in rows] + [""]
    return "\n".join(lines)


def report_rows(data: dict[str, Any]) -> dict[str, list[list[str]]]:
    """Per target, the rows of its table (see :data:`COLUMNS`), formatted."""
    sec = data["sections"]
    tables: dict[str, list[list[str]]] = {}
    for name in sorted({key.split("/")[0] for key in sec}):
        rows: list[list[str]] = []
        if (ing := sec.get(f"{name}/ingest")) is not None:
            rows.append(
                [
                    "ingest (create_batch)",
                    f"{ing['rows_per_s']:,.0f} rows/s",
                    "",
                    "",
                    f"incl. building Records: {ing['rows_per_s_incl_record_build']:,.0f}/s; "
                    f"RSS +{ing['rss_delta_mb']:.0f} MB (raw matrix {ing['raw_matrix_mb']:.0f} MB)",
                ]
            )
        if (s := sec.get(f"{name}/single")) is not None:
            rows.append(
                [
                    "single query, 1 thread",
                    f"{s['ours']['qps']:,.1f} QPS",
                    f"{s['raw']['qps']:,.1f} QPS",
                    f"{s['ratio_qps']:.3f}",
                    f"p50 {s['ours']['p50_ms']:.2f} ms (raw {s['raw']['p50_ms']:.2f}), "
                    f"p99 {s['ours']['p99_ms']:.2f} ms (raw {s['raw']['p99_ms']:.2f}), "
                    f"recall@k {s['recall_at_k']:.3f}",
                ]
            )
        if (b := sec.get(f"{name}/batched")) is not None:
            rows.append(
                [
                    f"batched B={b['batch']}, 2 threads",
                    f"{b['ours_qps']:,.0f} QPS",
                    f"{b['raw_qps']:,.0f} QPS",
                    f"{b['ratio_qps']:.3f}",
                    f"recall@k {b['recall_at_k']:.3f}",
                ]
            )
        for key in sorted(k for k in sec if k.startswith(f"{name}/filtered_")):
            f = sec[key]
            rows.append(
                [
                    f"filtered {f['selectivity']:.2%} of rows",
                    f"{f['ours_qps']:,.1f} QPS",
                    f"{f['raw_qps']:,.1f} QPS",
                    f"{f['ratio_qps']:.3f}",
                    f"k hits returned {f['complete']:.1%} of queries, recall@k "
                    f"{f['recall_at_k']:.3f} (raw: numpy mask, gather, score)",
                ]
            )
        if (o := sec.get(f"{name}/overhead")) is not None:
            rows.append(
                [
                    f"per-call overhead, {o['n']} rows",
                    f"{o['overhead_us']:.1f} us",
                    "",
                    "",
                    f"p50 {o['ours_p50_us']:.1f} us vs raw {o['raw_p50_us']:.1f} us; "
                    f"{o['overhead_with_records_us']:.1f} us when every hit's record is read",
                ]
            )
        for label, part in (sec.get(f"{name}/vs_raw") or {}).items():
            notes = [part.get("note", "")]
            if "complete" in part:
                notes.append(f"k hits {part['complete']:.1%}")
            rows.append(
                [
                    f"vs raw engine, {label}",
                    f"{part['ours_qps']:,.1f} {part.get('unit', 'QPS')}",
                    f"{part['raw_qps']:,.1f} {part.get('unit', 'QPS')}",
                    f"{part['ratio_qps']:.3f}",
                    "; ".join(n for n in notes if n),
                ]
            )
        tables[name] = rows
    return tables
