"""The capacity timeline as an SVG chart for reviews, in plain Python (no web or database here).

Written by hand rather than with a charting library: the chart must render where the portal's
Content-Security-Policy allows nothing but the gateway, also when a page puts it inline. So it uses no
`<style>` element, no `style` attribute, no script and no external reference (fonts, images, links):
colours and lines are SVG presentation attributes, which no CSP blocks. The libraries at hand (pygal,
matplotlib) style their output with CSS or embed fonts and scripts. Every text is user data (product
names, areas, units): the tree is serialised by `xml.etree`, which escapes it, after characters XML 1.0
cannot carry are replaced.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import date
from xml.etree import ElementTree as ET

from icep.plans.capacity.model import TimelinePoint, TimelineSeries

SVG_NS = "http://www.w3.org/2000/svg"
FONT = "DejaVu Sans, Arial, Helvetica, sans-serif"
COLOURS = {"requirement": "#b03a2e", "committed": "#1f4e79", "actual": "#7daa57", "grid": "#d9d9d9"}
WIDTH = 960
PANEL = 360
HEADER = 64
LEFT, RIGHT, TOP, BOTTOM = 84, 24, 70, 56
#: More panels than this make a page nobody reads: the rest is named, to be selected with `product=`.
MAX_PANELS = 40
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def clean(text: str, limit: int = 120) -> str:
    """User text as XML 1.0 can carry it (control characters replaced), shortened for a label."""
    text = _NOT_XML.sub("\ufffd", text)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _el(parent: ET.Element, tag: str, text: str | None = None, /, **attrs: object) -> ET.Element:
    node = ET.SubElement(parent, tag, {k.rstrip("_").replace("_", "-"): str(v) for k, v in attrs.items()})
    if text is not None:
        node.text = clean(text, 1000)
    return node


def _ticks(top: float) -> list[float]:
    """About five round steps from 0 up to at least `top`."""
    if top <= 0:
        return [0, 1]
    raw = top / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(math.ceil(top / step) + 1)]


def _figure(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:,.1f}"


def month_label(month: date) -> str:
    return f"{MONTHS[month.month - 1]} {month.year}"


def _step_line(
    panel: ET.Element,
    points: Sequence[TimelinePoint],
    value: str,
    x_of: float,
    slot: float,
    y_of: object,
    **attrs: object,
) -> None:
    """A value per month as a step line (flat across each month), broken where the value is missing."""
    runs: list[list[str]] = [[]]
    for i, p in enumerate(points):
        v = getattr(p, value)
        if v is None:
            if runs[-1]:
                runs.append([])
            continue
        y = y_of(v)  # type: ignore[operator]
        left = x_of + i * slot
        runs[-1] += [f"{left:.1f},{y:.1f}", f"{left + slot:.1f},{y:.1f}"]
    for run in runs:
        if run:
            _el(panel, "polyline", points=" ".join(run), fill="none", **attrs)


def _panel(svg: ET.Element, s: TimelineSeries, nations: list[str], top: float) -> None:
    g = _el(svg, "g", transform=f"translate(0,{top:.0f})")
    _el(
        g, "text", f"{clean(s.product)} ({clean(s.unit, 50)})", x=LEFT, y=24, font_size=16, font_weight="bold"
    )
    who = ", ".join(nations) if nations else "none"
    _el(
        g,
        "text",
        f"{clean(s.capability_area, 100)} \u00b7 nations: {who} \u00b7 per month",
        x=LEFT,
        y=44,
        font_size=12,
    )
    plot_w, plot_h = WIDTH - LEFT - RIGHT, PANEL - TOP - BOTTOM
    values = [v for p in s.points for v in (p.requirement, p.committed, p.actual) if v is not None]
    ticks = _ticks(max(values, default=0))
    scale = plot_h / ticks[-1]

    def y_of(v: float) -> float:
        return TOP + plot_h - v * scale

    for t in ticks:
        _el(
            g,
            "line",
            x1=LEFT,
            x2=LEFT + plot_w,
            y1=f"{y_of(t):.1f}",
            y2=f"{y_of(t):.1f}",
            stroke=COLOURS["grid"],
            stroke_width=1,
        )
        _el(g, "text", _figure(t), x=LEFT - 8, y=f"{y_of(t) + 4:.1f}", font_size=11, text_anchor="end")
    slot = plot_w / max(len(s.points), 1)
    for i, p in enumerate(s.points):
        if p.actual is not None:
            _el(
                g,
                "rect",
                x=f"{LEFT + i * slot + slot * 0.15:.1f}",
                y=f"{y_of(p.actual):.1f}",
                width=f"{slot * 0.7:.1f}",
                height=f"{p.actual * scale:.1f}",
                fill=COLOURS["actual"],
            )
    _step_line(g, s.points, "committed", LEFT, slot, y_of, stroke=COLOURS["committed"], stroke_width=2.5)
    _step_line(
        g,
        s.points,
        "requirement",
        LEFT,
        slot,
        y_of,
        stroke=COLOURS["requirement"],
        stroke_width=2,
        stroke_dasharray="7 4",
    )
    _el(g, "line", x1=LEFT, x2=LEFT + plot_w, y1=TOP + plot_h, y2=TOP + plot_h, stroke="#333333")
    every = max(1, math.ceil(len(s.points) / 12))
    for i, p in enumerate(s.points):
        if i % every == 0:
            x = LEFT + i * slot + slot / 2
            _el(
                g,
                "line",
                x1=f"{x:.1f}",
                x2=f"{x:.1f}",
                y1=TOP + plot_h,
                y2=TOP + plot_h + 5,
                stroke="#333333",
            )
            _el(
                g,
                "text",
                month_label(p.month),
                x=f"{x:.1f}",
                y=TOP + plot_h + 20,
                font_size=11,
                text_anchor="middle",
            )
    _legend(g, LEFT, PANEL - 14)


def _legend(g: ET.Element, x: float, y: float) -> None:
    items = (
        ("requirement", "Requirement (capability target / 12)"),
        ("committed", "Committed ramp (accepted plans)"),
        ("actual", "Actual output (latest corrected report)"),
    )
    for name, label in items:
        if name == "actual":
            _el(g, "rect", x=x, y=y - 10, width=18, height=10, fill=COLOURS[name])
        else:
            _el(
                g,
                "line",
                x1=x,
                x2=x + 18,
                y1=y - 5,
                y2=y - 5,
                stroke=COLOURS[name],
                stroke_width=2.5,
                **({"stroke_dasharray": "7 4"} if name == "requirement" else {}),
            )
        _el(g, "text", label, x=x + 24, y=y, font_size=11)
        x += 24 + 7 * len(label) + 24


def timeline_svg(
    months: list[date], series: list[TimelineSeries], title: str = "Alliance capacity timeline"
) -> str:
    """One panel per product (its series over every nation the caller may see), as a standalone SVG."""
    totals = [s for s in series if s.nation is None]
    shown = totals[:MAX_PANELS]
    nations: dict[str, list[str]] = {}
    for s in series:
        if s.nation is not None:
            nations.setdefault(s.product, []).append(s.nation)
    height = HEADER + PANEL * max(len(shown), 1) + (24 if len(totals) > len(shown) else 0)
    svg = ET.Element(
        "svg",
        {
            "xmlns": SVG_NS,
            "width": str(WIDTH),
            "height": str(height),
            "viewBox": f"0 0 {WIDTH} {height}",
            "role": "img",
            "aria-labelledby": "title desc",
            "font-family": FONT,
            "fill": "#222222",
        },
    )
    span = f"{month_label(months[0])} \u2013 {month_label(months[-1])}" if months else ""
    _el(svg, "title", f"{title}, {span}", id="title")
    _el(
        svg,
        "desc",
        "Per product and month: the Alliance requirement as a monthly rate (the year's capability target "
        "divided by 12), the committed ramp of the accepted national plans, and the reported actual output "
        "(each month's latest corrected figure), from the figures released to the reader.",
        id="desc",
    )
    _el(svg, "rect", x=0, y=0, width=WIDTH, height=height, fill="#ffffff")
    _el(svg, "text", title, x=LEFT, y=30, font_size=20, font_weight="bold")
    _el(svg, "text", span, x=LEFT, y=50, font_size=13)
    if not shown:
        _el(
            svg,
            "text",
            "No capacity figures you may see for this selection.",
            x=LEFT,
            y=HEADER + 40,
            font_size=14,
        )
    for i, s in enumerate(shown):
        _panel(svg, s, sorted(nations.get(s.product, [])), HEADER + i * PANEL)
    if len(totals) > len(shown):
        _el(
            svg,
            "text",
            f"{len(totals) - len(shown)} more products: select one with product=",
            x=LEFT,
            y=height - 8,
            font_size=12,
        )
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(svg, encoding="unicode")
