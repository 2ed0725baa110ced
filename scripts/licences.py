"""The dependency licence check and THIRD_PARTY.md (issue 16).

``check`` (the default; ``make licences``): pip-licenses lists every package installed in .venv and .venv-triton
(``--with-system``, licences ``--from=mixed``: the metadata's SPDX expression or licence field, else the trove
classifiers); each licence, normalised through the aliases of licences.toml, must be an SPDX expression satisfied by
the allow-list there (AND: every term allowed; OR: one; ``X WITH exception``: X allowed), or the package must be
named in an exception of licences.toml with its real licence and a reason. Exits 1 listing every other package.
Our own packages (photocraft-*) are skipped.

``notices`` (``make notices``): writes THIRD_PARTY.md: every model of models/registry.toml (name, licence id, licence,
source; non-commercial licences marked) and every package of both venvs (name, version, licence).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from license_expression import ExpressionError, LicenseWithExceptionSymbol, Licensing
from packaging.utils import canonicalize_name

from photocraft_common.licences import ACCEPT_SETTING, commercial_use

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "licences.toml"
REGISTRY = ROOT / "models" / "registry.toml"
NOTICES = ROOT / "THIRD_PARTY.md"
VENVS = {".venv": ROOT / ".venv" / "bin" / "python", ".venv-triton": ROOT / ".venv-triton" / "bin" / "python"}
OWN_PREFIX = "photocraft-"
MODELS_HEADING = "## Models"
LICENSING = Licensing()


@dataclass(frozen=True)
class Policy:
    """licences.toml: ``allowed`` SPDX ids, ``aliases`` (lower-cased reported spelling -> SPDX expression) and
    ``exceptions`` (canonical package name -> (real licence, reason))."""

    allowed: frozenset[str]
    aliases: dict[str, str]
    exceptions: dict[str, tuple[str, str]]


def load_policy(path: Path = POLICY) -> Policy:
    """Read licences.toml. Raises ValueError on an exception without ``packages``, ``licence`` or ``reason``."""
    data = tomllib.loads(path.read_text())
    exceptions = {}
    for entry in data.get("exception", []):
        if not (entry.get("packages") and entry.get("licence") and entry.get("reason")):
            raise ValueError(f"{path.name}: every [[exception]] needs packages, licence and reason: {entry}")
        for name in entry["packages"]:
            exceptions[canonicalize_name(name)] = (entry["licence"], entry["reason"])
    return Policy(frozenset(data["allowed"]), {k.lower(): v for k, v in data.get("aliases", {}).items()}, exceptions)


def normalise(reported: str, aliases: dict[str, str]) -> str:
    """An SPDX expression for a licence as pip-licenses reports it. Several classifiers ("A; B") are all required
    (AND: the classifiers do not say whether they are alternatives); the whole, else each part, goes through
    ``aliases``."""
    if reported.strip().lower() in aliases:
        return aliases[reported.strip().lower()]
    parts = [p.strip() for p in reported.split(";") if p.strip()]
    terms = [aliases.get(p.lower(), p) for p in parts] or ["UNKNOWN"]
    return terms[0] if len(terms) == 1 else " AND ".join(f"({t})" for t in terms)


def satisfied(expression: str, allowed: frozenset[str]) -> bool:
    """Whether an SPDX expression is satisfied by the ``allowed`` ids. Raises ExpressionError when unparsable."""

    def ok(node) -> bool:
        if isinstance(node, LicenseWithExceptionSymbol):
            return node.license_symbol.key in allowed
        if isinstance(node, LICENSING.AND):
            return all(ok(a) for a in node.args)
        if isinstance(node, LICENSING.OR):
            return any(ok(a) for a in node.args)
        return node.key in allowed

    return ok(LICENSING.parse(expression))


def violations(packages: list[dict], policy: Policy) -> list[str]:
    """One line per package of a pip-licenses JSON list (``Name``, ``Version``, ``License``) whose licence the
    policy does not allow; empty when all pass. Own packages and packages with an exception are skipped."""
    found = []
    for pkg in packages:
        name = canonicalize_name(pkg["Name"])
        if name.startswith(OWN_PREFIX) or name in policy.exceptions:
            continue
        expression = normalise(pkg["License"], policy.aliases)
        try:
            good = satisfied(expression, policy.allowed)
        except ExpressionError:
            good = False
        if not good:
            found.append(f"{pkg['Name']} {pkg['Version']}: {pkg['License']!r} (as {expression!r})")
    return found


def licence_of(pkg: dict, policy: Policy) -> str:
    """The licence THIRD_PARTY.md states for a package: an exception's real licence, else the normalised one."""
    name = canonicalize_name(pkg["Name"])
    if name in policy.exceptions:
        return policy.exceptions[name][0]
    return normalise(pkg["License"], policy.aliases)


def installed(python: Path) -> list[dict]:
    """pip-licenses' JSON list of every distribution ``python`` sees. Raises FileNotFoundError without the venv,
    CalledProcessError when pip-licenses fails."""
    if not python.exists():
        raise FileNotFoundError(f"{python} is missing: make install")
    out = subprocess.run(
        [sys.executable, "-m", "piplicenses", f"--python={python}", "--format=json", "--with-system", "--from=mixed"],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)


def non_commercial(model: dict) -> bool:
    """Whether a registry model's licence forbids commercial use (its ``commercial_use`` flag, read as the services
    read it). Raises ValueError when the flag is missing."""
    return not commercial_use(model)


def models_section(registry: dict) -> str:
    """The Markdown section on the models of models/registry.toml (parsed), in registry order."""
    lines = [MODELS_HEADING, "", "Weights and algorithms Photocraft serves (models/registry.toml). **Not for "
             "commercial use** marks a licence that forbids it: such a model is served only where the operator "
             f"accepts its licence id ({ACCEPT_SETTING}; docs/models.md, \"Model licences\").", "",
             "| Model | Licence id | Licence | Source |", "| --- | --- | --- | --- |"]
    for name, model in registry["models"].items():
        mark = " **Not for commercial use.**" if non_commercial(model) else ""
        lines.append(f"| {name} | `{model['licence_id']}` | {model['licence']}{mark} | `{model['source']}` |")
    return "\n".join(lines) + "\n"


def packages_section(venv: str, packages: list[dict], policy: Policy) -> str:
    """The Markdown section on the Python packages of one venv, by name."""
    lines = [f"## Python packages in {venv}", "", "| Package | Version | Licence |", "| --- | --- | --- |"]
    for pkg in sorted(packages, key=lambda p: canonicalize_name(p["Name"])):
        if not canonicalize_name(pkg["Name"]).startswith(OWN_PREFIX):
            lines.append(f"| {pkg['Name']} | {pkg['Version']} | {licence_of(pkg, policy)} |")
    return "\n".join(lines) + "\n"


def notices(registry: dict, venvs: dict[str, list[dict]], policy: Policy) -> str:
    """The whole of THIRD_PARTY.md."""
    head = ("# Third-party licences\n\nPhotocraft is licensed under Apache-2.0 (LICENSE). It serves the models and "
            "runs on the packages below, under their own licences. Generated by `make notices` "
            "(scripts/licences.py) from models/registry.toml and the installed packages; exceptions to the "
            "allow-list, with their reasons: licences.toml.\n")
    return "\n".join([head, models_section(registry)] + [packages_section(v, p, policy) for v, p in venvs.items()])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", choices=["check", "notices"], default="check")
    parser.add_argument("--policy", type=Path, default=POLICY, help="the allow-list (default licences.toml)")
    parser.add_argument("--output", type=Path, default=NOTICES, help="where notices writes (default THIRD_PARTY.md)")
    args = parser.parse_args(argv)
    policy = load_policy(args.policy)
    venvs = {venv: installed(python) for venv, python in VENVS.items()}
    if args.command == "notices":
        args.output.write_text(notices(tomllib.loads(REGISTRY.read_text()), venvs, policy))
        print(f"wrote {args.output}")
        return 0
    bad = {venv: violations(pkgs, policy) for venv, pkgs in venvs.items()}
    for venv, lines in bad.items():
        for line in lines:
            print(f"{venv}: licence outside licences.toml: {line}", file=sys.stderr)
    seen = {canonicalize_name(p["Name"]) for pkgs in venvs.values() for p in pkgs}
    for name in sorted(set(policy.exceptions) - seen):
        print(f"warning: licences.toml names {name} in an exception, but neither venv has it", file=sys.stderr)
    count = sum(map(len, bad.values()))
    print(f"{sum(map(len, venvs.values()))} packages checked, {count} outside the allow-list")
    return 1 if count else 0


if __name__ == "__main__":
    sys.exit(main())
