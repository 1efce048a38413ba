"""Condition snapshots -> incidents: one group per root cause, announced once, repeated, resolved.

The engine reports every active condition each cycle. One cause often raises several at once:
three failed payments make Vonage switch auto-reload off, the failed top-ups open the breaker, and
with no top-up possible the balance falls below the floor and is forecast to run out. Announcing
each is four alerts for one problem. So conditions are grouped by what can cause what
(``CAUSES``): a group is a connected set of active conditions, its *root* the deepest cause in it
(``ROOT_ORDER``), and the group is what gets announced — once when it opens, again only when it
changes in a way a person must know (a new cause, a different root, a cause that recovered), as a
reminder every ``repeat`` seconds, and once when all of it has ended.

A message is sent ``group_wait`` seconds after the first news, not at once (as Alertmanager's
``group_wait``): conditions of one cause arrive over a few cycles, and failed top-ups come
before the conditions they lead to. What is sent is the state at that moment compared with what
was last shown, so a condition that starts and ends within the wait is never announced at all.

While the balance cannot be read (``POLL_FAILING``), conditions that need a reading
(``NEEDS_A_READING``) are held as last seen: missing evidence is not a recovery. Time is an
argument; the tracker is pure and tests drive it with a virtual clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from topup_guard.events import Condition, ConditionsChanged, Outcome, TopUpFinished
from topup_guard.notify.note import IncidentAction

C = Condition
SYMPTOMS = frozenset({C.EXHAUSTION_FORECAST, C.LOW_BALANCE})
# What each condition can bring about. Anything that stops top-ups lets the balance fall.
CAUSES: Mapping[Condition, frozenset[Condition]] = {
    C.COORDINATION_DOWN: SYMPTOMS,
    C.POLL_FAILING: frozenset(),  # blind: held conditions keep their own groups
    C.AUTORELOAD_DISABLED: SYMPTOMS | {C.BREAKER_OPEN},  # its top-ups fail and open the breaker
    C.UNCONFIRMED_TOPUP: frozenset({C.BREAKER_OPEN}),  # unconfirmed top-ups count as failures
    C.BREAKER_OPEN: SYMPTOMS,
    C.CAP_REACHED: SYMPTOMS,
    C.EXHAUSTION_FORECAST: frozenset({C.LOW_BALANCE}),
    C.LOW_BALANCE: frozenset(),
    C.CREDIT_MISSING: SYMPTOMS,  # money counted as on its way did not arrive
    C.MESSAGES_REFUSED: frozenset(),  # the symptom senders see; grouped with what caused it
    C.BALANCE_MISREAD: frozenset(),  # a dropped answer: informational, its own group
    C.ONE_OFF_DEBIT: frozenset({C.LOW_BALANCE}),  # a lump can take the balance under the floor
    # Fleet: a primary that cannot pay leaves subaccounts low; a transfer in doubt holds one back.
    C.FLEET_SHORTFALL: frozenset({C.SUBACCOUNT_LOW}),
    C.TRANSFER_IN_DOUBT: frozenset({C.SUBACCOUNT_LOW}),
    C.SUBACCOUNT_SUSPENDED: frozenset(),
    C.SUBACCOUNT_LOW: frozenset(),
}
# The root of a group: the first of these in it (the one whose fix clears the others).
ROOT_ORDER = (
    C.COORDINATION_DOWN,
    C.POLL_FAILING,
    C.AUTORELOAD_DISABLED,
    C.UNCONFIRMED_TOPUP,
    C.BREAKER_OPEN,
    C.CAP_REACHED,
    C.CREDIT_MISSING,
    C.ONE_OFF_DEBIT,
    C.BALANCE_MISREAD,
    C.EXHAUSTION_FORECAST,
    C.LOW_BALANCE,
    C.MESSAGES_REFUSED,
    C.FLEET_SHORTFALL,
    C.TRANSFER_IN_DOUBT,
    C.SUBACCOUNT_SUSPENDED,
    C.SUBACCOUNT_LOW,
)
# The conditions a failed (refused) or unconfirmed top-up leads to: a group holding one of them
# tells the top-up; any other group is unrelated to it.
TOPUP_EXPLAINS: Mapping[Outcome, frozenset[Condition]] = {
    Outcome.FAILED: frozenset({C.AUTORELOAD_DISABLED, C.BREAKER_OPEN}),
    Outcome.UNCONFIRMED: frozenset({C.UNCONFIRMED_TOPUP, C.BREAKER_OPEN}),
    Outcome.SUCCEEDED: frozenset(),
    Outcome.DRY_RUN: frozenset(),
}
# Derived from a balance reading or a decision: unknown, not ended, while polls fail.
NEEDS_A_READING = frozenset(
    {
        C.LOW_BALANCE,
        C.AUTORELOAD_DISABLED,
        C.EXHAUSTION_FORECAST,
        C.CAP_REACHED,
        C.UNCONFIRMED_TOPUP,
    }
)


def _rank(condition: Condition) -> int:
    return ROOT_ORDER.index(condition)


def partition(active: Iterable[Condition]) -> list[frozenset[Condition]]:
    """Connected groups of ``active`` under ``CAUSES`` (either direction), deepest root first."""
    remaining = set(active)
    groups: list[frozenset[Condition]] = []
    for start in ROOT_ORDER:
        if start not in remaining:
            continue
        group, stack = {start}, [start]
        while stack:
            x = stack.pop()
            for y in remaining - group:
                if y in CAUSES[x] or x in CAUSES[y]:
                    group.add(y)
                    stack.append(y)
        remaining -= group
        groups.append(frozenset(group))
    return groups


@dataclass(frozen=True, slots=True)
class Member:
    since: float  # clock.now() when the condition started
    detail: str
    clears_at: float | None = None  # Unix seconds, when the engine knows
    held: bool = False  # kept from the last reading while the balance cannot be read


@dataclass(slots=True)
class _Incident:
    members: dict[Condition, Member]
    shown: frozenset[Condition] = frozenset()  # members at the last message
    shown_root: Condition | None = None  # root at the last message
    last_sent: float = 0.0
    merged_roots: set[Condition] = field(default_factory=set)  # shown roots of merged groups

    @property
    def root(self) -> Condition:
        return min(self.members, key=_rank)

    @property
    def since(self) -> float:
        return min(m.since for m in self.members.values())


@dataclass(frozen=True, slots=True)
class Change:
    """One message's worth of news about one group."""

    action: IncidentAction
    root: Condition
    members: tuple[tuple[Condition, Member], ...]  # root first, then by ROOT_ORDER
    lasted: float  # seconds since the group's first condition started
    recovered: tuple[Condition, ...] = ()  # shown conditions that ended since the last message
    replaces: tuple[Condition, ...] = ()  # earlier roots this group's messages stand in for
    topups: tuple[TopUpFinished, ...] = ()  # failed or unconfirmed top-ups behind it
    wall: float = 0.0


@dataclass(frozen=True, slots=True)
class Flush:
    changes: tuple[Change, ...]
    topups: tuple[TopUpFinished, ...]  # failed top-ups no group message could carry


def _sorted(members: Mapping[Condition, Member]) -> tuple[tuple[Condition, Member], ...]:
    return tuple(sorted(members.items(), key=lambda item: _rank(item[0])))


class IncidentTracker:
    def __init__(self, repeat: float, group_wait: float = 0.0) -> None:
        self.repeat = repeat
        self.group_wait = group_wait
        self._incidents: list[_Incident] = []
        self._ended: list[_Incident] = []  # shown groups that ended, awaiting their message
        self._topups: list[TopUpFinished] = []
        self._due: float | None = None
        self._wall = 0.0

    @property
    def active(self) -> frozenset[Condition]:
        return frozenset(c for inc in self._incidents for c in inc.members)

    @property
    def due_at(self) -> float | None:
        """clock.now() at which ``flush`` has something to say (None: nothing pending)."""
        return self._due

    # --- input ---------------------------------------------------------------------------
    def observe(self, snapshot: ConditionsChanged, now: float) -> None:
        self._wall = snapshot.wall or self._wall
        previous = {c: m for inc in self._incidents for c, m in inc.members.items()}
        active: dict[Condition, Member] = {}
        for condition, detail in snapshot.active.items():
            before = previous.get(condition)
            active[condition] = Member(
                since=before.since if before is not None else now,
                detail=str(detail),
                clears_at=snapshot.clears_at.get(condition),
            )
        if C.POLL_FAILING in snapshot.active:
            for condition, member in previous.items():
                if condition in NEEDS_A_READING and condition not in active:
                    active[condition] = replace(member, held=True)
        self._regroup(active)
        if self._has_news(now):
            self._arm(now)

    def add_topup(self, event: TopUpFinished, now: float) -> None:
        """A failed or unconfirmed top-up: told with the group it leads to, or on its own."""
        self._topups.append(event)
        self._wall = event.wall or self._wall
        self._arm(now)

    def _arm(self, now: float) -> None:
        if self._due is None:
            self._due = now + self.group_wait

    def _regroup(self, active: dict[Condition, Member]) -> None:
        groups = partition(active)
        fresh = [_Incident({c: active[c] for c in g}) for g in groups]
        for old in self._incidents:
            anchor = old.shown_root if old.shown_root is not None else old.root
            overlapping = [inc for inc in fresh if inc.members.keys() & old.members.keys()]
            successor = next((inc for inc in fresh if anchor in inc.members), None)
            if successor is None and overlapping:
                successor = max(overlapping, key=lambda i: len(i.members.keys() & old.members))
            if successor is None:
                if old.shown:
                    self._ended.append(old)
                continue
            for inc in overlapping:
                if inc is successor:
                    continue
                inc.shown |= old.shown & inc.members.keys()  # shown there, no news here
                inc.last_sent = max(inc.last_sent, old.last_sent)
            if successor.shown_root is not None and old.shown_root is not None:
                # Two shown groups merged: keep the better root, remember the other's key.
                keep, drop = sorted((successor.shown_root, old.shown_root), key=_rank)
                successor.merged_roots.add(drop)
                successor.shown_root = keep
            elif old.shown_root is not None:
                successor.shown_root = old.shown_root
            successor.shown |= old.shown
            successor.merged_roots |= old.merged_roots
            successor.last_sent = max(successor.last_sent, old.last_sent)
        self._incidents = fresh

    # --- output --------------------------------------------------------------------------
    def _action(self, inc: _Incident, now: float) -> IncidentAction | None:
        members = inc.members.keys()
        if inc.shown_root is None:
            if inc.root not in inc.shown:
                return IncidentAction.OPEN
            inc.shown_root = inc.root  # shown as part of a group that split: nothing new
        new_causes = (members - inc.shown) - SYMPTOMS
        gone_causes = (inc.shown - members) - SYMPTOMS
        if inc.shown_root != inc.root or inc.merged_roots or new_causes or gone_causes:
            return IncidentAction.UPDATE
        if now - inc.last_sent >= self.repeat:
            return IncidentAction.REPEAT
        return None

    def _has_news(self, now: float) -> bool:
        if self._ended or self._topups:
            return True
        return any(
            self._action(inc, now) in (IncidentAction.OPEN, IncidentAction.UPDATE)
            for inc in self._incidents
        )

    def repeat_due(self, now: float) -> bool:
        return any(self._action(inc, now) is IncidentAction.REPEAT for inc in self._incidents)

    def flush(self, now: float, *, force: bool = False) -> Flush:
        """What to announce now: news once ``due_at`` has come (or ``force``), repeats when due."""
        news_due = force or (self._due is not None and now >= self._due)
        changes: list[Change] = []
        for inc in self._incidents:
            action = self._action(inc, now)
            if action is None or (action is not IncidentAction.REPEAT and not news_due):
                continue
            replaces = set(inc.merged_roots)
            if inc.shown_root is not None and inc.shown_root != inc.root:
                replaces.add(inc.shown_root)
            changes.append(
                Change(
                    action=action,
                    root=inc.root,
                    members=_sorted(inc.members),
                    lasted=now - inc.since,
                    recovered=tuple(sorted(inc.shown - inc.members.keys(), key=_rank)),
                    replaces=tuple(sorted(replaces, key=_rank)),
                    wall=self._wall,
                )
            )
            inc.shown, inc.shown_root = frozenset(inc.members), inc.root
            inc.merged_roots.clear()
            inc.last_sent = now
        topups: tuple[TopUpFinished, ...] = ()
        if news_due:
            for old in self._ended:
                changes.append(
                    Change(
                        action=IncidentAction.RESOLVED,
                        root=old.shown_root or old.root,
                        members=_sorted(old.members),
                        lasted=now - old.since,
                        replaces=tuple(sorted(old.merged_roots, key=_rank)),
                        wall=self._wall,
                    )
                )
            self._ended.clear()
            topups, self._topups = tuple(self._topups), []
            self._due = None
        return self._attach(changes, topups)

    @staticmethod
    def _attach(changes: list[Change], topups: tuple[TopUpFinished, ...]) -> Flush:
        """Each failed top-up rides on the first opened or updated group it can explain (the
        deepest root first); the rest are told on their own."""
        carried: dict[int, list[TopUpFinished]] = {}
        alone: list[TopUpFinished] = []
        for event in topups:
            explains = TOPUP_EXPLAINS[event.outcome]
            for i, change in enumerate(changes):
                fresh = change.action in (IncidentAction.OPEN, IncidentAction.UPDATE)
                if fresh and explains & {c for c, _ in change.members}:
                    carried.setdefault(i, []).append(event)
                    break
            else:
                alone.append(event)
        for i, events in carried.items():
            changes[i] = replace(changes[i], topups=tuple(events))
        return Flush(tuple(changes), tuple(alone))
