"""Print a pip constraints file that pins every lower bound declared in pyproject.toml.

    python .ci/floors.py [EXTRA ...] > floors.txt
    pip install -c floors.txt ".[test]"
    python .ci/floors.py --check floors.txt     # in that environment: exactly those versions

Each requirement of ``[project].dependencies`` and of the named extras (default: ``test``) that
has a lower bound (``>=X``, ``~=X`` or ``==X``) becomes ``name==X``, so the environment holds
exactly the oldest versions the project says it supports, and its tests show whether that is true
(issue 18).  Requirements without a lower bound are left to pip; where two requirements bound
the same package, the higher bound wins.  Needs ``packaging`` (pip vendors it, and so does
every build environment)."""

import sys
import tomllib
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.version import Version
except ImportError:  # pip's copy
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.version import Version


def floors(pyproject: Path, extras: list[str]) -> dict[str, str]:
    meta = tomllib.loads(pyproject.read_text())["project"]
    reqs = list(meta.get("dependencies", []))
    optional = meta.get("optional-dependencies", {})
    for extra in extras:
        reqs += optional[extra]
    out: dict[str, str] = {}
    for text in reqs:
        r = Requirement(text)
        if r.name == meta["name"]:  # the project's own extras (chunkview[...])
            continue
        if r.marker is not None and not r.marker.evaluate():
            continue
        for spec in r.specifier:
            if spec.operator in (">=", "~=", "=="):
                name = r.name.lower().replace("_", "-")
                if name not in out or Version(spec.version) > Version(out[name]):
                    out[name] = spec.version
    return out


def check(path: str) -> int:
    """Compare the installed versions with a constraints file; 1 when one differs."""
    from importlib.metadata import PackageNotFoundError, version

    bad = []
    for line in Path(path).read_text().split():
        name, want = line.split("==")
        try:
            got = version(name)
        except PackageNotFoundError:
            got = None
        ok = got is not None and Version(got) == Version(want)
        print(f"  {name}: declared floor {want}, installed {got}{'' if ok else '  <-- differs'}")
        bad += [] if ok else [name]
    return 1 if bad else 0


def main(argv: list[str]) -> None:
    if argv[:1] == ["--check"]:
        sys.exit(check(argv[1]))
    root = Path(__file__).resolve().parent.parent
    for name, version in sorted(floors(root / "pyproject.toml", argv or ["test"]).items()):
        print(f"{name}=={version}")


if __name__ == "__main__":
    main(sys.argv[1:])
