"""A group of conditions (``incidents.Change``) -> one note naming the root cause. Pure.

The root's title heads the message and its action is what to do; the other conditions of the
group are listed under it as what the root brought about. Breaker and caps say when they clear;
a condition held from the last reading says so; failed top-ups behind the group are listed in it
instead of being posted one by one.
"""

from __future__ import annotations

from topup_guard.events import Condition, Outcome
from topup_guard.notify import format as f
from topup_guard.notify.conditions_text import CONDITION_TEXT
from topup_guard.notify.incidents import CAUSES, Change, Member
from topup_guard.notify.messages import plain, topup_lines
from topup_guard.notify.note import IncidentAction, IncidentRef, Note, Paragraph, Scope, Severity

_HELD = " (last reading: the balance cannot be read now)"


def clears(condition: Condition, member: Member, wall: float) -> str:
    """When a self-clearing condition ends, or how, when the time is not known."""
    at = member.clears_at
    if condition is Condition.BREAKER_OPEN:
        if at is not None:
            return f"One trial top-up is allowed {f.at_time(at, wall)}."
        return (
            "One trial top-up is allowed once the breaker's cooldown "
            "(TOPUP_GUARD_BREAKER_COOLDOWN) has passed since the last failed top-up."
        )
    if condition is Condition.CAP_REACHED:
        if at is not None:
            return f"Top-ups are allowed again {f.at_time(at, wall)}."
        return "Top-ups are allowed again once the oldest counted top-up leaves its rolling window."
    return ""


def _line(condition: Condition, member: Member, wall: float, *, titled: bool = True) -> str:
    info = CONDITION_TEXT[condition]
    detail = plain(member.detail)
    text = f"{info.title}: {detail}" if detail and titled else (detail or info.title)
    if member.held:
        text += _HELD
    when = clears(condition, member, wall)
    return f"{text}. {when}" if when else text


def _also(condition: Condition, member: Member, wall: float) -> str:
    """A condition under the root in the one-paragraph summary: its title, and when it clears
    if that is known (the body says how otherwise)."""
    title = CONDITION_TEXT[condition].title.lower()
    if member.clears_at is None:
        return title
    when = clears(condition, member, wall).rstrip(".")
    return f"{title} — {when[:1].lower()}{when[1:]}"


def explained_by(root: Condition) -> frozenset[Condition]:
    """Everything ``root`` can bring about, directly or through another condition."""
    found: set[Condition] = set()
    todo = [root]
    while todo:
        for effect in CAUSES[todo.pop()] - found:
            found.add(effect)
            todo.append(effect)
    return frozenset(found - {root})


def _count_topups(change: Change) -> str:
    """``'3 failed top-ups'``, ``'1 unconfirmed top-up'``, ``'2 failed and 1 unconfirmed …'``."""
    failed = sum(1 for t in change.topups if t.outcome is Outcome.FAILED)
    unsure = len(change.topups) - failed
    parts = [f"{n} {what}" for n, what in ((failed, "failed"), (unsure, "unconfirmed")) if n]
    return " and ".join(parts) + (" top-up" if len(change.topups) == 1 else " top-ups")


def _title(change: Change) -> tuple[str, str]:
    info = CONDITION_TEXT[change.root]
    if change.action is IncidentAction.REPEAT:
        return "🔁", f"Still: {info.title} (for {f.duration(change.lasted)})"
    if change.action is IncidentAction.RESOLVED:
        return "🟢", f"Recovered: {info.title}"
    if change.action is IncidentAction.UPDATE:
        return info.icon, f"Update: {info.title}"
    return info.icon, info.title


def incident(change: Change, scope: Scope) -> Note:
    icon, title = _title(change)
    info = CONDITION_TEXT[change.root]
    ref = IncidentRef(
        key=change.root.value,
        action=change.action,
        conditions=tuple(c for c, _ in change.members),
        replaces=tuple(c.value for c in change.replaces if c is not change.root),
    )
    conditions = ", ".join(c.value for c, _ in change.members)
    footer = (f"conditions: {conditions}", f.utc(change.wall))
    if change.action is IncidentAction.RESOLVED:
        return _resolved(change, scope, ref, icon, title, footer)
    members = dict(change.members)
    gone = " ".join(CONDITION_TEXT[c].recovered for c in change.recovered)
    root_line = _line(change.root, members[change.root], change.wall, titled=False)
    caused = explained_by(change.root)
    others = [_line(c, m, change.wall) for c, m in change.members if c is not change.root]
    because = [_line(c, m, change.wall) for c, m in change.members if c in caused]
    beside = [
        _line(c, m, change.wall)
        for c, m in change.members
        if c is not change.root and c not in caused
    ]
    paragraphs = [Paragraph(root_line)]
    if change.recovered:
        paragraphs.insert(0, Paragraph(gone, label="Recovered"))
    if because:
        paragraphs.append(Paragraph("\n".join(f"• {o}" for o in because), label="Because of it"))
    if beside:  # groups joined through a shared effect, not caused by the root
        paragraphs.append(Paragraph("\n".join(f"• {o}" for o in beside), label="Also active"))
    if change.topups:
        paragraphs.append(Paragraph("\n".join(topup_lines(change.topups)), label="Top-ups"))
    action = info.action
    if change.topups and change.topups[-1].action_needed and change.root in _TOPUP_ROOTS:
        action = change.topups[-1].action_needed or action
    paragraphs.append(Paragraph(action, label="What to do"))
    also = "; also: " + "; ".join(_also(c, m, change.wall) for c, m in change.members[1:])
    summary = (
        f"{title} — "
        + (f"{gone} Still: " if gone else "")
        + root_line
        + (also if others else "")
        + (f". After {_count_topups(change)}" if change.topups else "")
        + f". What to do: {action}"
    )
    return Note(
        kind=f"incident_{change.action.value}",
        severity=info.severity,
        icon=icon,
        title=title,
        summary=summary,
        scope=scope,
        paragraphs=tuple(paragraphs),
        footer=footer,
        wall=change.wall,
        incident=ref,
    )


# Roots whose own action is less specific than the failed top-up's (which says what failed).
_TOPUP_ROOTS = frozenset({Condition.BREAKER_OPEN, Condition.UNCONFIRMED_TOPUP})


def _resolved(
    change: Change,
    scope: Scope,
    ref: IncidentRef,
    icon: str,
    title: str,
    footer: tuple[str, ...],
) -> Note:
    sentences = [CONDITION_TEXT[c].recovered for c, _ in change.members]
    lasted = f.duration(change.lasted)
    summary = f"{title} — {' '.join(sentences)} (lasted {lasted})"
    return Note(
        kind="incident_resolved",
        severity=Severity.INFO,
        icon=icon,
        title=title,
        summary=summary,
        scope=scope,
        paragraphs=(Paragraph(" ".join(sentences) + f" It lasted {lasted}."),),
        footer=footer,
        wall=change.wall,
        incident=ref,
    )
