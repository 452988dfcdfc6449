"""Checks of .github/workflows/*.yml for machines where actionlint cannot be installed (its PyPI
package downloads the binary from GitHub at install time).  A subset of what actionlint does,
and no replacement for it:

- every ``uses:`` is a local action or pinned to a full 40-hex commit SHA followed by a
  ``# vX.Y.Z`` comment naming the version;
- the workflow sets top-level ``permissions:``;
- every ``run:`` script that runs in bash passes shellcheck (``${{ ... }}`` replaced by a
  placeholder, as actionlint does), when shellcheck is installed.

Structure against GitHub's schema is checked separately by check-jsonschema
(``--builtin-schema vendor.github-workflows``).  Exit status 1 on any finding.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

USES = re.compile(r"^\s*(?:-\s*)?uses:\s*([^\s#]+)\s*(?:#\s*(\S+))?")
SHA = re.compile(r"^[^@\s]+@[0-9a-f]{40}$")
EXPR = re.compile(r"\$\{\{.*?\}\}", re.S)


def check_pins(path: Path, text: str) -> list:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        m = USES.match(line)
        if not m:
            continue
        ref, comment = m.groups()
        if ref.startswith("./"):
            continue
        if not SHA.match(ref):
            out.append(f"{path}:{n}: {ref} is not pinned to a full commit SHA")
        elif not (comment and re.match(r"^v\d", comment)):
            out.append(f"{path}:{n}: {ref} has no '# vX.Y.Z' comment naming its version")
    return out


def bash_scripts(doc: dict):
    """(job, step name, script) of every run: step that runs in bash."""
    wf_shell = ((doc.get("defaults") or {}).get("run") or {}).get("shell")
    for job_id, job in (doc.get("jobs") or {}).items():
        job_shell = ((job.get("defaults") or {}).get("run") or {}).get("shell") or wf_shell
        runs_on = str(job.get("runs-on", ""))
        for i, step in enumerate(job.get("steps") or []):
            if "run" not in step:
                continue
            shell = step.get("shell") or job_shell
            if shell is None:  # GitHub's default: pwsh on Windows runners, bash elsewhere
                shell = "pwsh" if "windows" in runs_on.lower() else "bash"
            if shell.split()[0] in ("bash", "sh"):
                yield job_id, step.get("name", f"step {i + 1}"), str(step["run"])


def check_shell(path: Path, doc: dict) -> list:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        print(f"{path}: shellcheck not installed, run: scripts not checked")
        return []
    out = []
    for job, name, script in bash_scripts(doc):
        body = EXPR.sub("GHA_EXPR", script)
        res = subprocess.run([shellcheck, "--norc", "-s", "bash", "-"], input=body, text=True,
                             capture_output=True)
        if res.returncode != 0:
            out.append(f"{path}: job {job!r}, step {name!r}:\n{res.stdout.strip()}")
    return out


def main(paths: list) -> int:
    problems = []
    for p in map(Path, paths):
        text = p.read_text()
        doc = yaml.safe_load(text)
        if "permissions" not in doc:
            problems.append(f"{p}: no top-level permissions:")
        problems += check_pins(p, text)
        problems += check_shell(p, doc)
    for line in problems:
        print(line)
    print(f"lint-workflows: {len(paths)} files, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or sorted(str(p) for p in Path(".github/workflows").glob("*.y*ml"))))
