"""A member plan: one run whose members differ (architecture, width, input normalization, ...).

A plan is a list of *groups*, each ``count`` members with its own member-level
settings over the run's base options::

    [[members]]              # 5 members as the base options say (the group "base")
    count = 5

    [[members]]
    name = "deskewed"        # optional; default: its settings, e.g. "normalize=deskew"
    count = 5
    normalize = "deskew"
    epochs = 20

Members are numbered in plan order (group 1's members first). Member ``i``'s
settings are the base config with its group's settings replaced
(:meth:`ensemble_cnn.config.TrainConfig.member_config`); its seed is still
``(seed, i)``. A run grows by appending members to the plan's *last* group or by
appending groups: the members already trained keep their index and their settings
(:func:`plan_differences` refuses any other change). ``distortion`` in a group is a
table of :class:`augment.Distortion` fields merged over the base distortion.

This module holds the plan's data rules only (pure Python, no TensorFlow);
:class:`~ensemble_cnn.config.TrainConfig` validates a plan and resolves members.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from ensemble_cnn.data.reader import MAX_JSON_DEPTH, Voice, nesting_depth, read_regular
from ensemble_cnn.errors import EnsembleCnnError

__all__ = ["GROUP_KEYS", "MEMBER_FIELDS", "RUN_FIELDS", "PlanError", "canonical_plan", "group_name", "member_groups",
           "plan_differences", "read_plan"]

# The TrainConfig fields a group may set (what changes one member's training, not the run's).
MEMBER_FIELDS = (
    "arch", "width", "dropout", "normalize", "epochs", "batch_size", "learning_rate", "final_lr_fraction",
    "schedule", "ema", "label_smoothing", "checkpoint", "augmentation", "distortion", "erase", "erase_size",
    "val_size", "bootstrap",
)
GROUP_KEYS = ("name", "count", *MEMBER_FIELDS)
# TrainConfig fields that belong to the whole run, never to a group, each with why (for the one-line refusal).
RUN_FIELDS = {"holdout": "every member holds out the same digits; give it as --holdout"}
# The plan file's largest size (bytes): a plan is a few lines; anything larger is not one.
MAX_PLAN_BYTES = 1 << 20


class PlanError(EnsembleCnnError, ValueError):
    """A plan file or plan that cannot be used (one line naming the file or group and what was expected)."""


# How the one guarded open (ensemble_cnn.data.reader.read_regular) words a plan file it refuses.
PLAN_FILES = Voice(PlanError, {
    "missing": "{name}: cannot read the plan (no such file)",
    "unreadable": "{name}: cannot read the plan ({reason})",
    "cannot_open": "{name}: cannot read the plan ({reason})",
    "not_regular": "{name}: not a plan file (it is {kind}, not a regular file)",
    "empty": "{name}: not a plan file (empty)",
    "too_large": "{name}: not a plan file ({size}, over {limit})",
})


def read_plan(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a plan file (TOML with ``[[members]]`` tables); return its groups as plain dicts.

    Only the shape is checked here (a list of tables, known keys); the values are
    checked against the run's base config by :func:`canonical_plan`.

    Raises
    ------
    PlanError
        One line naming the file: unreadable, not a regular file (a FIFO, a device), over
        :data:`MAX_PLAN_BYTES`, not TOML, nested too deeply, no ``[[members]]``, an unknown key.
    """
    import tomllib

    path = Path(path)
    try:  # the one guarded open: a FIFO or device is refused, never waited on; at most MAX_PLAN_BYTES read
        text = read_regular(path, limit=MAX_PLAN_BYTES, what="plan", voice=PLAN_FILES,
                            allow_empty=True).decode("utf-8")
    except UnicodeDecodeError:
        raise PlanError(f"{path}: not a plan file (not UTF-8 text)") from None
    try:
        data = tomllib.loads(text)
        too_deep = nesting_depth(data) > MAX_JSON_DEPTH
    except tomllib.TOMLDecodeError as exc:
        raise PlanError(f"{path}: not valid TOML ({exc})") from None
    except RecursionError:  # the parser recurses once per level of nesting
        too_deep = True
    if too_deep:
        raise PlanError(f"{path}: not a plan file (nested more than {MAX_JSON_DEPTH} levels deep)")
    extra = sorted(set(data) - {"members"})
    if extra:
        raise PlanError(f"{path}: unknown top-level key {extra[0]!r} (a plan holds only [[members]] tables)")
    groups = data.get("members")
    if not isinstance(groups, list) or not groups or not all(isinstance(g, dict) for g in groups):
        raise PlanError(f"{path}: a plan needs at least one [[members]] table (with count = N)")
    try:
        check_keys(groups)
    except PlanError as exc:
        raise PlanError(f"{path}: {exc}") from None
    return groups


def check_keys(groups: list[dict[str, Any]]) -> None:
    """Refuse a group with an unknown key, a run-level key (:data:`RUN_FIELDS`) or without ``count`` (one line
    naming the group)."""
    for position, group in enumerate(groups, 1):
        run_level = sorted(set(group) & set(RUN_FIELDS))
        if run_level:
            key = run_level[0]
            raise PlanError(f"plan group {position}: {key} is a setting of the whole run, not of a group "
                            f"({RUN_FIELDS[key]})")
        unknown = sorted(set(group) - set(GROUP_KEYS))
        if unknown:
            raise PlanError(f"plan group {position}: unknown key {unknown[0]!r} (a group may set: "
                            f"{', '.join(GROUP_KEYS)})")
        if "count" not in group:
            raise PlanError(f"plan group {position}: no count (how many members the group has)")


def group_name(settings: dict[str, Any]) -> str:
    """The default name of a group: ``base`` without settings, else its settings (``normalize=deskew,width=1.5``)."""
    if not settings:
        return "base"
    parts = []
    for key in sorted(settings):
        value = settings[key]
        if isinstance(value, dict):
            parts += [f"{key}.{inner}={_text(value[inner])}" for inner in sorted(value)]
        else:
            parts.append(f"{key}={_text(value)}")
    return ",".join(parts)


def _text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, dict)) or value is None else str(value).lower() \
        if isinstance(value, bool) else str(value)


def canonical_plan(groups: Any, *, max_members: int,
                   canonical: Callable[[int, dict[str, Any]], dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The plan in canonical form: each group ``{"name", "count", **settings}``, names unique.

    Checks the shape and counts; ``canonical(position, settings)`` checks a group's
    settings and returns them in canonical form (:class:`~ensemble_cnn.config.TrainConfig`
    builds the group's member config), before the group is named.

    Raises
    ------
    PlanError
        Not a non-empty list of groups, an unknown key, a count that is not an integer
        >= 1, a total above ``max_members``, a name given twice.
    """
    if not isinstance(groups, (list, tuple)) or not groups or not all(isinstance(g, dict) for g in groups):
        raise PlanError("plan must be a non-empty list of groups (objects with a count)")
    check_keys(list(groups))
    result, names, total = [], set(), 0
    for position, group in enumerate(groups, 1):
        count = group["count"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise PlanError(f"plan group {position}: count must be an integer >= 1, got {count!r}")
        settings = {key: group[key] for key in MEMBER_FIELDS if key in group}
        if "distortion" in settings and not isinstance(settings["distortion"], dict):
            raise PlanError(f"plan group {position}: distortion must be a table of augment.Distortion fields, "
                            f"got {settings['distortion']!r}")
        if canonical is not None:
            settings = canonical(position, settings)
        if "name" in group:
            name = group["name"]
            if not isinstance(name, str) or not name.strip() or len(name) > 80 or not name.isprintable():
                raise PlanError(f"plan group {position}: name must be printable text of 1 to 80 characters, got {name!r}")
            if name in names:
                raise PlanError(f"plan group {position}: name {name!r} is given to two groups")
        else:
            name, suffix = group_name(settings), 2
            while name in names:  # the same settings again (e.g. a group appended to grow a run)
                name, suffix = f"{group_name(settings)}#{suffix}", suffix + 1
        names.add(name)
        total += count
        if total > max_members:
            raise PlanError(f"plan must hold at most {max_members} members (the most a run may have), "
                            f"got more from group {position} on")
        result.append({"name": name, "count": count, **settings})
    return result


def member_groups(plan: list[dict[str, Any]]) -> list[int]:
    """The group (position in ``plan``) of every member, by index."""
    return [position for position, group in enumerate(plan) for _ in range(group["count"])]


def _member_groups(plan: list[dict[str, Any]] | None, members: int) -> list[tuple[int, dict[str, Any]]]:
    """Each member's group as ``(1-based position, group)``; a run without a plan is one group "base" of ``members``."""
    groups = plan if plan is not None else [{"name": "base", "count": members}]
    return [(g + 1, groups[g]) for g in member_groups(groups)]


def _spec(group: dict[str, Any]) -> str:
    """A group's name and settings as comparable text (its count aside)."""
    return json.dumps(group | {"count": None}, sort_keys=True)


def plan_differences(asked: list[dict[str, Any]] | None, asked_members: int,
                     folder: list[dict[str, Any]] | None, folder_members: int) -> list[str]:
    """Why a run folder cannot hold the plan asked for (empty when it can).

    It can when one plan's members are the other's first members: the same group
    (name and settings) at every index both have. Appending members to the last group,
    or appending groups, grows a run; asking for fewer members uses the first ones.
    The reason names the first member that differs, its group and every setting that
    differs (``plan group 2 ('deotte'): width 0.5 asked, 0.75 in the folder``).
    """
    mine, theirs = _member_groups(asked, asked_members), _member_groups(folder, folder_members)
    for index, ((position, group), (folder_position, folder_group)) in enumerate(zip(mine, theirs)):
        if _spec(group) != _spec(folder_group):
            what = _group_difference(position, group, folder_position, folder_group)
            return [f"the plan at member {index:02d} ({what}; "
                    "a run grows only by adding members to its last group or adding groups)"]
    return []


def _group_difference(position: int, group: dict[str, Any], folder_position: int, folder_group: dict[str, Any]) -> str:
    """``plan group 2 ('deotte'): width 0.5 asked, 0.75 in the folder`` (both groups named when they differ)."""
    head = f"plan group {position} ({group['name']!r})"
    if (position, group["name"]) != (folder_position, folder_group["name"]):
        head += f" asked, group {folder_position} ({folder_group['name']!r}) in the folder"
    mine, theirs = _flat_settings(group), _flat_settings(folder_group)
    changed = [f"{key} {_shown(mine.get(key, _UNSET))} asked, {_shown(theirs.get(key, _UNSET))} in the folder"
               for key in sorted(set(mine) | set(theirs)) if mine.get(key, _UNSET) != theirs.get(key, _UNSET)]
    return head + (": " + ", ".join(changed) if changed else "")


_UNSET = object()  # a setting a group leaves to the base


def _flat_settings(group: dict[str, Any]) -> dict[str, Any]:
    """A group's settings, a ``distortion`` table as ``distortion.alpha``, ... (name and count aside)."""
    flat = {}
    for key, value in group.items():
        if key in ("name", "count"):
            continue
        if isinstance(value, dict):
            flat.update({f"{key}.{inner}": value[inner] for inner in value})
        else:
            flat[key] = value
    return flat


def _shown(value: Any) -> str:
    """A setting's value in a message: ``'deskew'``, ``0.5``, ``true``; ``(not set)`` when left to the base."""
    if value is _UNSET:
        return "(not set)"
    return repr(value) if isinstance(value, str) else _text(value)
