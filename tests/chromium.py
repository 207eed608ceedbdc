"""Make sure Debian's chromium is installed for the browser tests (never a downloaded browser).

Run by the test command (README, .ci/run) before pytest: with chromium on PATH it does nothing;
without it, as root on Debian, it installs the `chromium` package with apt-get. Elsewhere it says
how to install it, and fails in CI (where browser tests must run) or lets the browser tests be
skipped with a note.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


def main() -> int:
    if shutil.which("chromium"):
        return 0
    if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        print("browser tests: installing Debian's chromium (apt-get install chromium)", file=sys.stderr)
        quiet = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for step in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]):
            done = subprocess.run(step, env=quiet, stdout=subprocess.DEVNULL)
            if done.returncode != 0:
                print(f"browser tests: `{' '.join(step)}` failed (exit code {done.returncode})", file=sys.stderr)
                return 1
        if shutil.which("chromium"):
            return 0
    print("browser tests: Debian's chromium is not installed; install it (sudo apt-get install chromium) "
          "or the browser tests " + ("fail in CI" if os.environ.get("CI") else "are skipped"), file=sys.stderr)
    return 1 if os.environ.get("CI") else 0


if __name__ == "__main__":
    sys.exit(main())
