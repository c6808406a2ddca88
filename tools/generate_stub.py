"""Regenerate python/dspark/_C.pyi from the built extension (pybind11-stubgen).

Usage: ``python tools/generate_stub.py`` (write) or ``python tools/generate_stub.py --check``
(exit 1 if the committed stub is stale; tests/test_stub.py runs this). Build-dependent values
(``built_with_cuda: bool = True``) are reduced to their types so the stub is the same for every
build.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

STUB = Path(__file__).resolve().parents[1] / "python" / "dspark" / "_C.pyi"


def generate() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pybind11_stubgen", "dspark._C", "-o", tmp],
            check=True,
            capture_output=True,
        )
        text = (Path(tmp) / "dspark" / "_C.pyi").read_text()
    # module-level constants: keep the annotation, drop the build-specific value
    return re.sub(r"^([a-z]\w*: [\w\[\], ]+) = .*$", r"\1", text, flags=re.M)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true", help="fail if the committed stub is stale")
    args = ap.parse_args()
    text = generate()
    if args.check:
        if not STUB.exists() or STUB.read_text() != text:
            print(f"{STUB} is stale: run python tools/generate_stub.py", file=sys.stderr)
            return 1
        return 0
    STUB.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
